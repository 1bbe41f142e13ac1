# PKD (Cao et al., NeurIPS 2022) on the FPN features of a GFL detector on the
# fashion scenes: GFL R-18 w32 teacher -> w16 student, Pearson-correlation
# distillation on all three FPN levels (weight 6 per level, the mmrazor
# setting); 1x1 conv + BN adapters (64 -> 128 channels) are built
# automatically; the teacher runs backbone + neck only. The same entry as
# pkd_retinanet_r18-w32_to_w16_scenes.py: FPN distillation does not depend on
# the detector's head.
# Teacher: python tools/train.py configs/baselines/mmdet/gfl_r18-w32_scenes_teacher.py
_base_ = ['./bckd_gfl_r18-w32_to_w16_scenes.py']

model = dict(
    distill=dict(
        _delete_=True,
        fpn=dict(
            student='neck', teacher='neck', loss=dict(type='PKDLoss', loss_weight=6.0)
        ),
    )
)
