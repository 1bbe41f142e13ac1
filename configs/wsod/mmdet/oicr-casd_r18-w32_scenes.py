# OICR + CASD (input-wise and layer-wise attention self-distillation across the
# 2 scales x 2 flips views): the paper's L = L_OICR + 0.1 (L_IW + L_LW); the
# official code has this term switched off (docs/models/casd.md).
# Train: python tools/train.py configs/wsod/mmdet/oicr-casd_r18-w32_scenes.py
_base_ = ['./oicr_r18-w32_scenes.py']

model = dict(
    # divide_by_rois=False: the loss is already a mean over the RoIs' cells; a
    # further division by the ~1,800 RoIs of a batch makes the term vanish
    casd_iw=dict(type='CASDInputWiseLoss', divide_by_rois=False, loss_weight=0.1),
    casd_lw=dict(type='CASDLayerWiseLoss', loss_weight=0.1),
    lw_levels=(0, 1),
)
