# CWD (Shu et al., ICCV 2021) on FPN features of the fashion scenes:
# RetinaNet R-18 w32 teacher -> w16 student, channel-wise softmax KL over
# H*W (tau=1, weight 10 per level: mmrazor's detection setting), all three
# levels in one entry, automatic 1x1 conv + BN adapters (64 -> 128 ch).
_base_ = ['./pkd_retinanet_r18-w32_to_w16_scenes.py']

model = dict(
    distill=dict(
        _delete_=True,
        fpn=dict(
            student='neck',
            teacher='neck',
            loss=dict(type='ChannelWiseDivergenceLoss', tau=1.0, loss_weight=10.0),
        ),
    )
)
