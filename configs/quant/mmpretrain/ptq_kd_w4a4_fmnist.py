# Limited-data PTQ of the Fashion-MNIST student at W4A4 (Yuan et al., ICPR 2020):
# 10 training images per class (100 images); stage 1 reconstructs every residual
# block against the float block's output (unit-wise, as ptq_w4a4_fmnist.py),
# stage 2 trains the whole quantized model against the float model's logits
# (KL, eval-mode BN, Adam with cosine decay) on the same 100 images.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_kd_w4a4_fmnist.py FP32.pth \
#       --test [--method rtn (stage 2 only) | --kd-iters 0 (stage 1 only)]
# Group-wise weights as in the paper: --cfg-options model.quant.w.num_groups=4
_base_ = ['./ptq_w4a4_fmnist.py']

ptq = dict(
    images_per_class=10,
    method='unit',
    reconstruction=dict(iters=300, batch_size=32, loss='mse'),
    kd=dict(iters=500, batch_size=32, lr=1e-4, loss='kl', temperature=1.0),
)
