# DKD on ADE20K (20,210 / 2,000 images), 100-50 overlapped, step 0: classes
# 1-100, label 0 ("other") as background as in the official code (no
# reduce_zero_label). VOC's model and optimiser, 100 epochs, batch 32.
# Whole split: python tools/ciss.py <this config>
_base_ = ['./dkd_deeplabv3_r101_voc-15-5_step0.py']

split = '100-50'
data_root = 'data/ade/ADEChallengeData2016'
model = dict(split=split, num_classes=150)
_ade = dict(
    _delete_=True,
    type='ADE20KDataset',
    data_root=data_root,
    reduce_zero_label=False,
    data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
    pipeline={{_base_.train_pipeline}},
)
train_dataloader = dict(
    dataset=dict(
        split=split,
        dataset=_ade,
        background_name='other',
        index_file=f'{data_root}/ciss_index.json',
    )
)
val_dataloader = dict(
    dataset=dict(
        split=split,
        background_name='other',
        dataset=dict(
            _ade,
            data_prefix=dict(
                img_path='images/validation', seg_map_path='annotations/validation'
            ),
            pipeline={{_base_.test_pipeline}},
        ),
    )
)
test_dataloader = val_dataloader
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=max_epochs,
        by_epoch=True,
        convert_to_iter_based=True,
    )
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
