# Y-channel x2 super-resolution on the scikit-image photos (CPU-sized schedule):
# HR patches of 48 px from the training photos, whole held-out photos for testing
# (mmcompress.datasets.sr_photos TRAIN_PHOTOS / TEST_PHOTOS), PSNR/SSIM with a
# border of `scale` pixels cropped. Adam + cosine to 1e-5 as the official PISR
# schedule, scaled from 1M to 3000 iterations.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

scale = 2
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SRPhotoDataset', scale=scale, patch_size=48, num_samples=1000),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SRPhotoDataset', scale=scale),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='SRQualityMetric', crop_border=scale)
test_evaluator = val_evaluator

max_iters = 3000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False)
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
log_processor = dict(by_epoch=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
