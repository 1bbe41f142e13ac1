# MAL (Ke et al., CVPR 2020) on the fashion scenes, as the official release:
# FreeAnchor anchor bags (Mean-max selection, pre_anchor_topk 40, cls prior
# 0.02) plus feature depression of the FPN maps during training, its ratio
# following the reflected step 0, .1, ..., .5, .5, ..., .1, 0 over 12 equal
# parts of the run (MALScheduleHook). Backbone/neck: retinanet_r18-w16_scenes.py.
# Baseline: configs/baselines/mmdet/freeanchor_r18-w16_scenes.py
# Data: python tools/generate_scenes.py --task det --split bench
_base_ = ['../../baselines/mmdet/freeanchor_r18-w16_scenes.py']

model = dict(
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
            override=dict(
                type='Normal', name='retina_cls', std=0.01, bias_prob=0.02))))
custom_hooks = [dict(type='MALScheduleHook')]
