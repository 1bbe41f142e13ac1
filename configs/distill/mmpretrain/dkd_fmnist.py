# Decoupled KD (Zhao et al., CVPR 2022) on Fashion-MNIST:
# loss = CE + min(epoch/warmup, 1) * (alpha TCKD + beta NCKD), official
# mdistiller CIFAR-100 weights (alpha=1, beta=8, tau=4, batch-sum / N
# reduction); the 20-of-240-epoch warm-up is scaled to 1 of 8 epochs, run by
# iteration (55k images / 128 per batch = 430 iterations).
_base_ = './kd_fmnist.py'

model = dict(
    distill=dict(
        _delete_=True,
        dkd=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='DecoupledKDLoss', alpha=1.0, beta=8.0, tau=4.0),
            schedule=dict(warmup_iters=430),
        ),
    )
)
