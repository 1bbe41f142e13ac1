# Fashion-MNIST (real, 28x28 grayscale, 10 classes) from the Debian package's IDX files.
# split: 'train' = 55k (60k minus a stratified 5k hold-out), 'val' = the 5k hold-out,
# 'test' = the official 10k test set. subset_size keeps a class-balanced subset.
dataset_type = 'FashionMNISTDataset'
data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.02], to_rgb=False)

train_pipeline = [
    dict(type='RandomCrop', crop_size=28, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, split='val', pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1,))
test_dataloader = dict(
    batch_size=500,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, split='test', pipeline=test_pipeline),
)
test_evaluator = val_evaluator
