# KD fine-tune of a decomposed scenes RetinaNet: the trained
# retinanet_r18-w16_scenes.py is the teacher, the student its decomposed copy.
# Decompose the backbone at -50 % of its FLOPs first:
#   python tools/decompose.py configs/baselines/mmdet/retinanet_r18-w16_scenes.py \
#       work_dirs/retinanet_r18-w16_scenes/iter_1600.pth --flops-ratio 0.5 \
#       --include 'backbone.*' --flops-of selected --method svd --shape 1 3 128 128 \
#       --out-dir work_dirs/retinanet_svd
# then train with model.student.config=<the config tools/decompose.py wrote>
# (without it the student is the undecomposed model: the same fine-tune as a
# control). load_from the trained checkpoint initialises the student (the
# decomposed layers factorise its float weights). Loss: the detector's own
# losses + PKD (Pearson correlation of the FPN maps, weight 6 per level, as
# pkd_retinanet_r18-w32_to_w16_scenes.py): teacher and student share the
# architecture, so their features align without adapters.
# Schedule: 800 iterations of 8 images, AdamW at a tenth of the training lr
# (2e-4), 50 warm-up iterations, cosine to 1 %.
_base_ = ['../../baselines/mmdet/retinanet_r18-w16_scenes.py']

trained = 'work_dirs/retinanet_r18-w16_scenes/iter_1600.pth'
model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/retinanet_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/retinanet_r18-w16_scenes.py',
        checkpoint=trained,
    ),
    input_shape=(3, 128, 128),
    distill=dict(
        fpn=dict(
            student='neck', teacher='neck', loss=dict(type='PKDLoss', loss_weight=6.0)
        )
    ),
)
load_from = trained

max_iters = 800
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 50,
        eta_min_ratio=0.01,
        by_epoch=False,
        begin=50,
        end=max_iters,
    ),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
