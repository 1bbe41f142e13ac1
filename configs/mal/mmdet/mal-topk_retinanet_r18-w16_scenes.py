# MAL with the paper's explicit anchor selection instead of the release's
# Mean-max: each bag's probability is the mean of its top-k most confident
# anchors, k shrinking linearly from 40 to 1 over training, together with the
# depression schedule of mal_retinanet_r18-w16_scenes.py.
_base_ = ['./mal_retinanet_r18-w16_scenes.py']

model = dict(bbox_head=dict(selection='topk'))
custom_hooks = [dict(type='MALScheduleHook', selection_topk=(40, 1))]
