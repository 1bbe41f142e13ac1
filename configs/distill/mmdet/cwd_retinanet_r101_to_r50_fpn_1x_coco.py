# CWD on FPN features on COCO, the previous toolbox's reference detection
# setting: RetinaNet R-101 (2x, mmdet model zoo) -> RetinaNet R-50, 1x
# schedule, channel-wise distillation (tau 1, weight 10 per level) on all five
# FPN levels in one entry. Both FPNs have 256 channels: no adapter is built.
# The teacher runs backbone + neck only. A model-zoo-style recipe for a GPU
# cluster (8 GPUs x 2 images = batch 16, SGD lr 0.01, the mmdet 1x schedule);
# benchmarks/distill_overhead.py times its step (case det-fpn-zoo).
#   bash tools/dist_train.sh \
#     configs/distill/mmdet/cwd_retinanet_r101_to_r50_fpn_1x_coco.py 8
# The plain student (epoch_12_student.pth) tests with mmdet's own config:
#   bash tools/dist_test.sh mmdet::retinanet/retinanet_r50_fpn_1x_coco.py \
#       work_dirs/cwd_retinanet_r101_to_r50_fpn_1x_coco/epoch_12_student.pth 8
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(config='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/'
        'retinanet/retinanet_r101_fpn_2x_coco/'
        'retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth',
    ),
    input_shape=(3, 320, 320),
    distill=dict(
        fpn=dict(
            student='neck',
            teacher='neck',
            loss=dict(type='ChannelWiseDivergenceLoss', tau=1.0, loss_weight=10.0),
        )
    ),
)
