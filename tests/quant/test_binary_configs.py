"""The AdamBNN / binary configs: optimizer rules and a real two-step run."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmcompress.models  # noqa: F401  (registers ReActNet)
import mmcompress.quant.binary  # noqa: F401  (registers the binary quantizers)
from mmcompress.testing import shorten_schedule, shrink_data

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'configs',
    'quant',
    'mmpretrain',
)


def _config(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def _build(cfg):
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    return MODELS.build(cfg.model)


def _weight_decay_by_name(cfg, model):
    from mmengine.optim import build_optim_wrapper

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    param_to_name = {p: n for n, p in model.named_parameters()}
    decay = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[param_to_name[param]] = group['weight_decay']
    assert set(decay) == set(param_to_name.values())
    return decay


def _official_decay(name, param):
    """AdamBNN: decay parameters with ndim == 4 or 'conv' in the name. The RSign
    shift is a (1, C, 1, 1) LearnableBias in the official code (ndim 4)."""
    return param.dim() == 4 or name.endswith('.shift')


@pytest.mark.parametrize(
    'config,weight_decay,binary_weights',
    [('adambnn_step1_fmnist.py', 5e-6, False), ('adambnn_step2_fmnist.py', 0.0, True)],
)
def test_adambnn_configs_follow_official_optimizer_rules(
    config, weight_decay, binary_weights
):
    cfg = _config(config)
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.optim_wrapper.optimizer.lr == 1.25e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == weight_decay
    scheduler = cfg.param_scheduler
    assert (
        scheduler.type,
        scheduler.start_factor,
        scheduler.end_factor,
        scheduler.end,
    ) == ('LinearLR', 1.0, 0.0, cfg.train_cfg.max_epochs + 1)
    model = _build(cfg)
    assert model.backbone.binary_activations
    assert model.backbone.binary_weights == binary_weights
    decay = _weight_decay_by_name(cfg, model)
    params = dict(model.named_parameters())
    expected = {
        name: weight_decay if _official_decay(name, params[name]) else 0.0
        for name in params
    }
    assert decay == expected
    assert sum(v > 0 for v in decay.values()) == (
        0 if weight_decay == 0 else 1 + 10 + 8 + 16
    )  # stem+convs, RSign, RPReLU


def test_adambnn_lr_schedule_is_linear_to_zero_per_epoch():
    from mmengine.optim.scheduler import LinearLR

    cfg = _config('adambnn_step1_fmnist.py')
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=cfg.optim_wrapper.optimizer.lr)
    kwargs = {k: v for k, v in cfg.param_scheduler.items() if k != 'type'}
    scheduler = LinearLR(optimizer, **kwargs)
    epochs = cfg.train_cfg.max_epochs
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        scheduler.step()
    # official LambdaLR: lr = base_lr * (1 - epoch / epochs)
    expected = [1.25e-3 * (1 - e / epochs) for e in range(epochs)]
    assert lrs == pytest.approx(expected)


def test_adambnn_step2_loads_step1_checkpoint():
    step1, step2 = (
        _config('adambnn_step1_fmnist.py'),
        _config('adambnn_step2_fmnist.py'),
    )
    assert (
        step2.load_from == 'work_dirs/adambnn_step1_fmnist/epoch_'
        f'{step1.train_cfg.max_epochs}.pth'
    )
    state = _build(step1).state_dict()
    result = _build(step2).load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys


def test_binary_w1a1_generic_transform_config():
    cfg = _config('binary_w1a1_fmnist.py')
    model = _build(cfg)
    quantized = {
        name: module
        for name, module in model.named_modules()
        if getattr(module, 'weight_quantizer', None) is not None
    }
    assert 'backbone.conv1' not in quantized and 'head.fc' not in quantized
    assert len(quantized) == 14  # 3 stages x 2 blocks x 2 convs + 2 downsample
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        layer = quantized['backbone.layer1.0.conv1']
        seen = []
        handle = layer.register_forward_hook(
            lambda m, args, out: seen.append(m.act_quantizer(args[0]))
        )
        model(x, mode='tensor')
        handle.remove()
    assert set(seen[0].unique().tolist()) <= {-1.0, 0.0, 1.0}


def _small_run_cfg(name, work_dir, **overrides):
    cfg = _config(name)
    cfg.work_dir = str(work_dir)
    shrink_data(cfg, subset_size=dict(train=2560, val=1000))
    cfg.train_dataloader.batch_size = 64
    shorten_schedule(cfg, epochs=1, log_interval=10)
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.mark.slow
def test_adambnn_two_step_recipe_trains_on_fashion_mnist(tmp_path, deterministic):
    """Step 1 (binary activations) then step 2 (binary weights, load_from step 1),
    each one epoch of 40 iterations on real Fashion-MNIST."""
    from mmengine.runner import Runner

    step1 = Runner.from_cfg(
        _small_run_cfg('adambnn_step1_fmnist.py', tmp_path / 'step1')
    )
    step1.train()
    losses = step1.message_hub.get_scalar('train/loss').data[0]
    step1_acc = step1.val_loop.run()['accuracy/top1']
    checkpoint = tmp_path / 'step1' / 'epoch_1.pth'
    assert checkpoint.is_file()

    step2 = Runner.from_cfg(
        _small_run_cfg(
            'adambnn_step2_fmnist.py', tmp_path / 'step2', load_from=str(checkpoint)
        )
    )
    step2.load_or_resume()
    step1_state = torch.load(checkpoint, map_location='cpu', weights_only=False)[
        'state_dict'
    ]
    for name, value in step2.model.state_dict().items():
        torch.testing.assert_close(value, step1_state[name])
    binarized_acc = step2.val_loop.run()['accuracy/top1']
    step2.train()
    step2_acc = step2.val_loop.run()['accuracy/top1']
    print(
        f'step 1 {step1_acc:.1f}, step-1 weights binarized '
        f'{binarized_acc:.1f}, step 2 {step2_acc:.1f}'
    )
    # 40 iterations: the training loss falls clearly; the running BN statistics
    # of so young a network still lag, so step-1 validation is only above chance
    assert losses[-5:].mean() < losses[:5].mean() - 0.4, losses
    assert step1_acc > 12, step1_acc  # chance: 10
    assert step2_acc > 40 and step2_acc > binarized_acc + 10, step2_acc


@pytest.mark.parametrize(
    'config,binary_weights,weight_decay',
    [
        ('adambnn_step1_kd_fmnist.py', False, 5e-6),
        ('adambnn_step2_kd_fmnist.py', True, 0.0),
    ],
)
def test_adambnn_kd_configs_train_on_teacher_only(config, binary_weights, weight_decay):
    from mmpretrain.structures import DataSample

    import mmcompress.distill  # noqa: F401  (registers DistillModel)

    cfg = _config(config)
    cfg.model.teacher.checkpoint = None  # a random teacher is enough here
    model = _build(cfg)
    assert model.student.backbone.binary_weights == binary_weights
    decay = _weight_decay_by_name(cfg, model)
    params = dict(model.named_parameters())
    assert all(name.startswith('student.') for name in params)
    assert decay == {
        name: weight_decay if _official_decay(name, p) else 0.0
        for name, p in params.items()
    }
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model(torch.randn(4, 1, 28, 28), samples, mode='loss')
    # official DistributionLoss: teacher soft labels only, no label term
    task_losses = [v for k, v in losses.items() if 'distill' not in k]
    assert task_losses and all(v.item() == 0.0 for v in task_losses)
    assert losses['loss_distill_kd'].item() > 0
