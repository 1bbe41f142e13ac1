# MAL R-50-FPN on COCO: a model-zoo-style recipe for a GPU cluster
# (8 GPUs x 2 images), not for CPU. The official release trains 135k
# iterations at batch 16 (about 18 epochs, lr 0.01, steps at 90k/120k); this
# recipe keeps mmdet's 1x FreeAnchor schedule (12 epochs), so compare it with
# mmdet's freeanchor_r50_fpn_1x_coco.py.
#   bash tools/dist_train.sh configs/mal/mmdet/mal_retinanet_r50_fpn_1x_coco.py 8
#   bash tools/dist_test.sh configs/mal/mmdet/mal_retinanet_r50_fpn_1x_coco.py \
#       work_dirs/mal_retinanet_r50_fpn_1x_coco/epoch_12.pth 8
_base_ = ['mmdet::free_anchor/freeanchor_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

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
