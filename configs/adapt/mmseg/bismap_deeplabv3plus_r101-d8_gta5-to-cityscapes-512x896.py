# BiSMAP self-training GTA5 -> Cityscapes, DeepLabV3+ R-101 (GPU cluster recipe;
# not run here). Official: 61.2 mIoU after its two extra distillation rounds
# (not part of this recipe). Starts from the source-only model; GMM (K=8)
# pseudo-labels of the Cityscapes train images are written before training by
# PseudoLabelHook (official threshold: log-likelihood 100; per-class sampling
# ratios of the official GTA5 run); source CE weighted by transferability to 40
# target k-means prototypes (of the segmentor's decoder features; officially of
# SimCLR ResNet-152 features); EMA teacher 0.999, consistency 30 with a
# 4000-iteration ramp; 4 source + 4 target crops of 512x896 per iteration.
# Train: python tools/train.py \
#   configs/adapt/mmseg/bismap_deeplabv3plus_r101-d8_gta5-to-cityscapes-512x896.py
_base_ = ['./deeplabv3plus_r101-d8_gta5-source-only-512x896.py']

load_from = 'work_dirs/deeplabv3plus_r101-d8_gta5-source-only-512x896/iter_40000.pth'
pseudo_label_dir = (
    'work_dirs/bismap_deeplabv3plus_r101-d8_gta5-to-cityscapes-512x896/pseudo_labels'  # noqa: E501
)

model = dict(
    type='BiSMAPSegmentor',
    ema_momentum=0.999,
    consistency_weight=30.0,
    consistency_rampup=4000,
    sce_alpha=0.1,
    sce_beta=1.0,
    cutout_ratio=0.2,
    transfer=dict(momentum=0.99),
)
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPseudoLabel'),
    dict(
        type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 1.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='uda_collate'),
    dataset=dict(
        type='UDAPairDataset',
        source={{_base_.source_dataset}},
        target=dict(
            type='UnlabeledTargetDataset',
            data_root='data/cityscapes/',
            data_prefix=dict(img_path='leftImg8bit/train'),
            img_suffix='_leftImg8bit.png',
            pseudo_label_dir=pseudo_label_dir,
            pipeline=target_train_pipeline,
        ),
    ),
)
source_label_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='MapLabelIds', mapping={{_base_.cityscapes_ids}}),
    dict(type='Resize', scale=(1280, 720), keep_ratio=True),
    dict(type='PackSegInputs'),
]
custom_hooks = [
    dict(
        type='PseudoLabelHook',
        source=dict(
            type='BaseSegDataset',
            metainfo={{_base_.source_dataset.metainfo}},
            data_root={{_base_.source_dataset.data_root}},
            data_prefix={{_base_.source_dataset.data_prefix}},
            img_suffix='.png',
            seg_map_suffix='.png',
            pipeline=source_label_pipeline,
        ),
        target_pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')],
        method='gmm',
        num_components=8,
        threshold=100.0,
        class_ratios=[
            0.002,
            0.01,
            0.003,
            0.1,
            0.1,
            0.1,
            1.0,
            1.0,
            0.01,
            0.05,
            0.01,
            0.5,
            1.0,
            0.05,
            0.1,
            0.2,
            1.0,
            1.0,
            1.0,
        ],  # fmt: skip
        max_per_class=300000,
        num_prototypes=40,
        max_target_features=1000000,
        batch_size=1,
    )
]

max_iters = 90000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='SGD', lr=5e-4, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=400),
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=400, end=max_iters, by_epoch=False
    ),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))
