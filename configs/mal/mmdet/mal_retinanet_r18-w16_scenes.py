# MAL (Ke et al., CVPR 2020) on the fashion scenes, as the official release:
# FreeAnchor anchor bags (Mean-max selection, pre_anchor_topk 40, cls prior
# 0.02) plus feature depression of the FPN maps during training, its ratio
# following the reflected step 0, .1, ..., .5, .5, ..., .1, 0 over 12 equal
# parts of the run (MALScheduleHook). Backbone/neck: retinanet_r18-w16_scenes.py.
# Baseline: configs/baselines/mmdet/freeanchor_r18-w16_scenes.py
# Data: python tools/generate_scenes.py --task det --split bench
_base_ = [
    '../../baselines/mmdet/freeanchor_r18-w16_scenes.py',
    './_base_/mal_freeanchor.py',
]

model = {{_base_.mal_model}}
custom_hooks = [dict(type='MALScheduleHook')]
