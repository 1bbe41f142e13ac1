# LSQ (Esser et al., ICLR 2020): learned step sizes with the 1/sqrt(N*Qp)
# gradient scale, initialized to 2*mean|x|/sqrt(Qp) on the first batch after the
# float checkpoint is loaded. Step sizes: same lr as the weights, no weight decay.
# W4A4 on Fashion-MNIST, fine-tuned from the float student.
# Train: python tools/train.py configs/quant/mmpretrain/lsq_w4a4_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=4, signed=True),
        a=dict(type='LSQQuantizer', bits=4),
    )
)
