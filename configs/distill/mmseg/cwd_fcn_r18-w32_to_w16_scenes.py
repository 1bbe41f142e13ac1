# CWD (Shu et al., ICCV 2021) on segmentation logits of the fashion scenes:
# FCN R-18 w32 teacher -> w16 student, channel-wise softmax KL over H*W of
# the decode head's logits (tau=1, weight 5: mmrazor's PSPNet Cityscapes
# setting). Both have 11 classes, so no adapter is needed.
# Teacher: python tools/train.py configs/baselines/mmseg/fcn_r18-w32_scenes_teacher.py
_base_ = ['../../baselines/mmseg/fcn_r18-w16_scenes.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmseg/fcn_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmseg/fcn_r18-w32_scenes_teacher.py',
        checkpoint='work_dirs/fcn_r18-w32_scenes_teacher/iter_2000.pth',
    ),
    input_shape=(3, 128, 128),
    distill=dict(
        logits=dict(
            student='decode_head.conv_seg',
            teacher='decode_head.conv_seg',
            loss=dict(type='ChannelWiseDivergenceLoss', tau=1.0, loss_weight=5.0),
        )
    ),
)
