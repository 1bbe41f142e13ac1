# W8A8 LSQ top-down-heatmap on the fashion scenes: the W4A4 recipe (same layers,
# schedule and float starting point, see lsq_w4a4_topdown_heatmap_r18-w16_scenes.py)
# with 8-bit quantizers.
_base_ = ['./lsq_w4a4_topdown_heatmap_r18-w16_scenes.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
    )
)
