# Source-only DeepLabV3+ R-101 on GTA5, evaluated on Cityscapes val: the start
# (warm-up) model of BiSMAP self-training (GPU cluster recipe; not run here).
# The official repo ships its warm-up model without its training recipe; this is
# mmseg's Cityscapes DeepLabV3+ schedule (40k iterations, SGD 0.01) on GTA5 crops.
# Data: data/gta5/{images,labels}/*.png (labels in Cityscapes label ids, mapped
# to the 19 train ids by MapLabelIds) and mmseg's data/cityscapes layout.
# Train: python tools/train.py \
#   configs/adapt/mmseg/deeplabv3plus_r101-d8_gta5-source-only-512x896.py
_base_ = ['mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-40k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

crop_size = (512, 896)
# Cityscapes label id -> train id (GTA5 labels use the Cityscapes ids)
cityscapes_ids = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8,
                  22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16,
                  32: 17, 33: 18}  # fmt: skip
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='MapLabelIds', mapping=cityscapes_ids),
    dict(
        type='RandomResize', scale=(1914, 1052), ratio_range=(0.5, 1.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
source_dataset = dict(
    type='BaseSegDataset',
    metainfo=dict(
        classes=(
            'road',
            'sidewalk',
            'building',
            'wall',
            'fence',
            'pole',
            'traffic light',
            'traffic sign',
            'vegetation',
            'terrain',
            'sky',
            'person',
            'rider',
            'car',
            'truck',
            'bus',
            'train',
            'motorcycle',
            'bicycle',
        )  # fmt: skip
    ),
    data_root='data/gta5/',
    data_prefix=dict(img_path='images', seg_map_path='labels'),
    img_suffix='.png',
    seg_map_suffix='.png',
    pipeline=source_train_pipeline,
)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(dataset=dict(_delete_=True, **source_dataset))
