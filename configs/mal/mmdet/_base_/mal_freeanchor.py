# MAL's changes to a FreeAnchor RetinaNet, as the official release sets them:
# feature depression of the FPN maps (scale 0.25 of the ratio schedule driven
# by MALScheduleHook) and FreeAnchor bags with Mean-max selection,
# pre_anchor_topk 40, bbox_thr 0.6, focal gamma 2 / alpha 0.5, cls prior 0.02.
# Use: _base_ = [<a FreeAnchor config>, '<this file>'],
#      model = {{_base_.mal_model}} and custom_hooks = [dict(type='MALScheduleHook')]
mal_model = dict(
    type='MALRetinaNet',
    depressed_scale=0.25,
    bbox_head=dict(
        type='MALFreeAnchorHead',
        selection='mean_max',
        pre_anchor_topk=40,
        bbox_thr=0.6,
        gamma=2.0,
        alpha=0.5,
        init_cfg=dict(
            type='Normal',
            layer='Conv2d',
            std=0.01,
            override=dict(type='Normal', name='retina_cls', std=0.01, bias_prob=0.02),
        ),
    ),
)
