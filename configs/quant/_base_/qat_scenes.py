# The QAT fine-tuning block of the scenes recipes (mmdet / mmseg / mmpose): the
# float recipe's optimizer at lr 5e-4, no weight decay on the quantizer parameters
# ('<layer>.weight_quantizer.step', '<layer>.act_quantizer.step'), cosine decay to
# 1 % of the lr over the whole run (mmengine sets the scheduler's end to the run's
# max_iters and T_max to end - begin).
# Use: _base_ = [<float scenes config>, '../_base_/qat_scenes.py'], then
#      optim_wrapper = {{_base_.qat_optim_wrapper}}
#      param_scheduler = {{_base_.qat_param_scheduler}}
#      max_iters = N
#      train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
#      default_hooks = dict(checkpoint=dict(interval=max_iters))
qat_optim_wrapper = dict(
    optimizer=dict(lr=5e-4),
    paramwise_cfg=dict(custom_keys={'_quantizer.': dict(decay_mult=0.0)}),
)
qat_param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=False, begin=0)
]
