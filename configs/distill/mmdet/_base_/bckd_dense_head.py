# The released BCKD entry (Yang et al., ICCV 2023) for a DistillModel whose
# student and teacher are one-stage mmdet detectors: binary-classification KD
# (sigmoid BCE to the teacher scores modulated by |p_t - p_s|, weight 1.0) and
# IoU localisation KD (GIoU between the boxes each model decodes, weighted by
# the largest class-score disagreement, weight 4.0) on every FPN level,
# normalised by the number of positive anchors (docs/distill/detection.md).
# Use: _base_ = [<student config>, '<this file>'] and
#      model = dict(..., distill={{_base_.bckd_dense_head}})
bckd_dense_head = dict(
    bckd=dict(
        student='bbox_head',
        teacher='bbox_head',
        loss=dict(
            type='DenseHeadDistillLoss',
            cls_loss=dict(type='BCKDClassificationLoss', beta=1.0, loss_weight=1.0),
            loc_loss=dict(
                type='BCKDLocalizationLoss', iou_mode='giou', loss_weight=4.0
            ),
        ),
    )
)
