# Ablation of PISR step 2: the same student, initialisation and schedule, with
# plain L1 feature distillation of `expanding` instead of the variance-aware loss.
_base_ = './pisr_student_x4_photos.py'

model = dict(
    distill=dict(
        expanding=dict(loss=dict(_delete_=True, type='FeatureL1Loss', loss_weight=0.1))
    )
)
