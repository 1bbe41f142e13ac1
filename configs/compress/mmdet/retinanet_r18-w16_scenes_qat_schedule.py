# The scenes RetinaNet (configs/baselines/mmdet/retinanet_r18-w16_scenes.py) with
# the QAT fine-tuning schedule of the scenes quantization configs (../../quant/
# _base_/qat_scenes.py: lr 5e-4, cosine, 150 iterations, as in
# configs/quant/mmdet/lsq_w8a8_retinanet_r18-w16_scenes.py), as the CONFIG of
# tools/compress.py (its QAT stage trains with this config's schedule):
#   python tools/compress.py \
#       configs/compress/mmdet/retinanet_r18-w16_scenes_qat_schedule.py \
#       work_dirs/retinanet_r18-w16_scenes/iter_1600.pth \
#       --recipe qat-int8 --work-dir WORK --shape 1 3 128 128
_base_ = [
    '../../baselines/mmdet/retinanet_r18-w16_scenes.py',
    '../../quant/_base_/qat_scenes.py',
]

optim_wrapper = {{_base_.qat_optim_wrapper}}
param_scheduler = {{_base_.qat_param_scheduler}}
max_iters = 150
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
