# BiSMAP self-training SYNTHIA -> Cityscapes, DeepLabV3+ R-101 (GPU cluster
# recipe; not run here). Official: 62.8 mIoU after its distillation rounds (not
# part of this recipe). As the GTA5 recipe, with SYNTHIA data, the official
# SYNTHIA per-class sampling ratios and the SYNTHIA source-only start model.
# Train: python tools/train.py \
#   configs/adapt/mmseg/bismap_deeplabv3plus_r101-d8_synthia-to-cityscapes-512x896.py
_base_ = ['./bismap_deeplabv3plus_r101-d8_gta5-to-cityscapes-512x896.py']

load_from = 'work_dirs/deeplabv3plus_r101-d8_synthia-source-only-512x896/iter_40000.pth'
pseudo_label_dir = (
    'work_dirs/bismap_deeplabv3plus_r101-d8_synthia-to-cityscapes-512x896/pseudo_labels'  # noqa: E501
)
synthia_ids = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9,
               1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17,
               11: 18}  # fmt: skip
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', imdecode_backend='cv2'),
    dict(type='MapLabelIds', mapping=synthia_ids, channel=2),
    dict(
        type='RandomResize', scale=(1280, 760), ratio_range=(0.5, 1.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
source_label_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', imdecode_backend='cv2'),
    dict(type='MapLabelIds', mapping=synthia_ids, channel=2),
    dict(type='PackSegInputs'),
]
synthia = dict(
    data_root='data/synthia/',
    data_prefix=dict(img_path='RGB', seg_map_path='GT/LABELS'),
)
train_dataloader = dict(
    dataset=dict(
        source=dict(synthia, pipeline=source_train_pipeline),
        target=dict(pseudo_label_dir=pseudo_label_dir),
    )
)
custom_hooks = [
    dict(
        type='PseudoLabelHook',
        source=dict(
            type='BaseSegDataset',
            metainfo={{_base_.source_dataset.metainfo}},
            img_suffix='.png',
            seg_map_suffix='.png',
            pipeline=source_label_pipeline,
            **synthia,
        ),
        target_pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')],
        method='gmm',
        num_components=8,
        threshold=100.0,
        class_ratios=[
            0.008,
            0.04,
            0.012,
            0.4,
            0.4,
            0.4,
            1.0,
            0.5,
            0.04,
            0.2,
            0.02,
            0.07,
            0.5,
            0.05,
            0.4,
            0.08,
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
