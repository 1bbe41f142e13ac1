# Source-only DeepLabV3+ R-101 on SYNTHIA (RAND-CITYSCAPES), evaluated on
# Cityscapes val (19 classes; SYNTHIA has no terrain, truck, train): the start
# model of BiSMAP SYNTHIA -> Cityscapes (GPU cluster recipe; not run here).
# Data: data/synthia/{RGB,GT/LABELS}/*.png (16-bit labels, SYNTHIA ids in the red
# channel, mapped to the 19 train ids by MapLabelIds) and mmseg's data/cityscapes.
# Train: python tools/train.py \
#   configs/adapt/mmseg/deeplabv3plus_r101-d8_synthia-source-only-512x896.py
_base_ = ['./deeplabv3plus_r101-d8_gta5-source-only-512x896.py']

# SYNTHIA id -> Cityscapes train id (official encode_segmap_synthia)
synthia_ids = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9,
               1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17,
               11: 18}  # fmt: skip
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    # cv2 keeps the 16-bit 3-channel map (BGR order: red is channel 2)
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
source_dataset = dict(
    data_root='data/synthia/',
    data_prefix=dict(img_path='RGB', seg_map_path='GT/LABELS'),
    pipeline=source_train_pipeline,
)
train_dataloader = dict(dataset=source_dataset)
