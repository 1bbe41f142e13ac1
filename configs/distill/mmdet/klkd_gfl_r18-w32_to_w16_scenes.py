# LD-style softmax-KL classification KD (the baseline BCKD is compared with)
# on the fashion scenes: GFL R-18 w32 teacher -> w16 student, KL between the
# softmax over classes of teacher and student logits per anchor (tau=2,
# weight 10 as in LD), normalised by the number of positive anchors; no
# localisation distillation. Same path as BCKD (DenseHeadDistillLoss).
# Teacher: python tools/train.py configs/baselines/mmdet/gfl_r18-w32_scenes_teacher.py
_base_ = ['./bckd_gfl_r18-w32_to_w16_scenes.py']

model = dict(
    distill=dict(
        _delete_=True,
        klkd=dict(
            student='bbox_head',
            teacher='bbox_head',
            loss=dict(
                type='DenseHeadDistillLoss',
                cls_loss=dict(type='DenseSoftmaxKDLoss', tau=2.0, loss_weight=10.0),
                loc_loss=None,
            ),
        ),
    )
)
