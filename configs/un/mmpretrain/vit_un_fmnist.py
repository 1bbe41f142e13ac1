# Small ViT on Fashion-MNIST with Unified Normalization in every norm position
# (official vision setting: window 4, outlier filtration on). warmup_iters is
# scaled to the short schedule: 4000 (official, ImageNet) would be more
# iterations than the whole run; 200 iterations here is about half an epoch of
# the 55k training split at batch 128. After training, fold with
# mmcompress.models.norms.fuse_un (or export with export_folded_onnx).
_base_ = './_base_/vit_fmnist.py'

model = dict(
    backbone=dict(
        norm_cfg=dict(
            _delete_=True,
            type='UN',
            window_size=4,
            warmup_iters=200,
            outlier_filtration=True,
        )
    )
)
