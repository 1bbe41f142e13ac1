# tools/compress.py recipe `qat-w4a4-kd`: the `qat-w4a4` pipeline with the QAT
# stage distilled from a float teacher (--teacher CONFIG CKPT): a DistillModel
# whose student is the W4A4 QuantizedModel, trained with the task loss plus
# vanilla KD (tau 4) between the classifiers' logits (`head.fc`; for other
# tasks override `distill` with --qat-options or a recipe of your own).
# Stages:
#   float_test  tools/test.py CONFIG CHECKPOINT
#   kd_qat      tools/train.py WORK/kd_qat/train_config.py   (DistillModel)
#   qat_test    tools/test.py WORK/kd_qat/config.py WORK/kd_qat/<last>_student.pth
#   export      tools/export_onnx.py WORK/kd_qat/config.py <student ckpt> --out ...
#   onnx_test   tools/test_onnx.py WORK/kd_qat/config.py WORK/model_int8.onnx
#   speed       FP32 vs int8 graph: sizes, onnxruntime latency (qat_int8.py)
_base_ = ['./qat_w4a4.py']
stages = ['float_test', 'kd_qat', 'qat_test', 'export', 'onnx_test', 'speed']
distill = dict(
    kd=dict(
        student='head.fc',
        teacher='head.fc',
        loss=dict(type='VanillaKDLoss', tau=4.0, loss_weight=1.0),
    )
)
