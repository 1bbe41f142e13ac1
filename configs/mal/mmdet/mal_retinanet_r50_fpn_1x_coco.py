# MAL R-50-FPN on COCO: a model-zoo-style recipe for a GPU cluster
# (8 GPUs x 2 images), not for CPU. The official release trains 135k
# iterations at batch 16 (about 18 epochs, lr 0.01, steps at 90k/120k); this
# recipe keeps mmdet's 1x FreeAnchor schedule (12 epochs), so compare it with
# mmdet's freeanchor_r50_fpn_1x_coco.py.
#   bash tools/dist_train.sh configs/mal/mmdet/mal_retinanet_r50_fpn_1x_coco.py 8
#   bash tools/dist_test.sh configs/mal/mmdet/mal_retinanet_r50_fpn_1x_coco.py \
#       work_dirs/mal_retinanet_r50_fpn_1x_coco/epoch_12.pth 8
_base_ = [
    'mmdet::free_anchor/freeanchor_r50_fpn_1x_coco.py',
    './_base_/mal_freeanchor.py',
]
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

model = {{_base_.mal_model}}
custom_hooks = [dict(type='MALScheduleHook')]
