# Calibration training of a quantized student: LSQ W4A4 quantization-aware
# fine-tuning (configs/quant/mmpretrain/lsq_w4a4_fmnist.py, from the float
# student checkpoint) where the float model is a RankMixupClassifier, so the
# QAT loss is CE(raw) + 0.1 MRL(raw vs mixed), both through the quantized
# layers. Train the float student first (fp32_resnet18-w8_fmnist.py, or
# rankmixup-mrl_resnet18-w8_fmnist.py with --cfg-options load_from=...).
_base_ = ['../../quant/mmpretrain/lsq_w4a4_fmnist.py']

model = dict(
    model=dict(
        type='RankMixupClassifier',
        rank_loss=dict(
            type='MixupMarginRankingLoss',
            margin=2.0,
            loss_weight=0.1,
            faithful_broadcast=True,
        ),
        num_mixup=1,
        mixup_alpha=2.0,
    )
)

optim_wrapper = dict(clip_grad=dict(max_norm=2.0))

val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='ClsCalibrationMetric', num_bins=15),
]
test_evaluator = val_evaluator
# reliability diagram of every evaluation, to the visualizer backends
# (vis_data/vis_image/calibration_reliability_{val,test}_<step>.png)
custom_hooks = [dict(type='ReliabilityDiagramHook')]
