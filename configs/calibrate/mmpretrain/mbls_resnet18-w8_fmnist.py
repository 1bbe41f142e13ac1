# Margin-based label smoothing (MbLS): CE + 0.1 * mean relu(max z - z - 6).
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(
    head=dict(
        loss=dict(_delete_=True, type='MarginLogitSmoothLoss', margin=6.0, alpha=0.1)
    )
)
