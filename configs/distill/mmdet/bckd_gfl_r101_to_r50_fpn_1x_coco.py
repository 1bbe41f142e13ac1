# BCKD on COCO, the released setting: GFL R-101 (multi-scale 2x, 44.7 mAP,
# mmdet model zoo) -> GFL R-50, 1x schedule, binary-classification KD 1.0 and
# GIoU localisation KD 4.0. A model-zoo-style recipe for a GPU cluster
# (8 GPUs x 2 images = batch 16, SGD lr 0.01, the mmdet 1x schedule); the
# official README reports 40.1 -> 43.2 mAP for this student.
#   bash tools/dist_train.sh configs/distill/mmdet/bckd_gfl_r101_to_r50_fpn_1x_coco.py 8
# The plain student (epoch_12_student.pth) tests with mmdet's own config:
#   bash tools/dist_test.sh mmdet::gfl/gfl_r50_fpn_1x_coco.py \
#       work_dirs/bckd_gfl_r101_to_r50_fpn_1x_coco/epoch_12_student.pth 8
_base_ = ['mmdet::gfl/gfl_r50_fpn_1x_coco.py', './_base_/bckd_dense_head.py']
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(config='mmdet::gfl/gfl_r50_fpn_1x_coco.py'),
    teacher=dict(
        config='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/gfl/'
        'gfl_r101_fpn_mstrain_2x_coco/'
        'gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth',
    ),
    input_shape=(3, 320, 320),
    distill={{_base_.bckd_dense_head}},
)
