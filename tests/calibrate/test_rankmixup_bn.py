"""Batch normalization of RankMixup's mixed forward (``mixed_bn_stats``).

With the official ``'batch'`` mode the mixed copies are normalized with their
own batch statistics, which lets the ranking loss be met through batch
statistics alone and mixes raw and mixed batches into the running statistics:
RankMixup's short-schedule setting on the demo's 10,000 images evaluated at
17 % top-1 that way. ``'raw'`` normalizes them with the raw batch's
statistics and keeps the running statistics of raw batches only.
"""

import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

import mmcompress.calibrate  # noqa: F401  (registers the components)
from mmcompress.registry import MODELS
from mmcompress.testing import shrink_data

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'calibrate', 'mmpretrain')


def build(mixed_bn_stats):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='RankMixupClassifier',
            backbone=dict(
                type='ResNet_CIFAR',
                depth=18,
                in_channels=1,
                stem_channels=4,
                base_channels=4,
                num_stages=2,
                strides=(1, 2),
                dilations=(1, 1),
                out_indices=(1,),
            ),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=4,
                in_channels=8,
                loss=dict(type='CrossEntropyLoss'),
            ),
            rank_loss=dict(type='MixupMarginRankingLoss', margin=2.0, loss_weight=1.0),
            num_mixup=2,
            mixup_alpha=0.5,
            mixed_bn_stats=mixed_bn_stats,
        )
    )


def batch(size=8):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(size, 1, 12, 12, generator=generator) * 2 + 1
    labels = torch.arange(size) % 4
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    return inputs, samples


def run_loss(model, inputs, samples):
    """``model.loss`` in train mode; returns its losses, the mixed inputs and
    the mixed logits it ranked."""
    seen = {}
    backbone_inputs = []
    model.backbone.register_forward_pre_hook(
        lambda module, args: backbone_inputs.append(args[0])
    )
    model.rank_loss.register_forward_hook(
        lambda module, args, out: seen.update(mixed_logits=args[1])
    )
    model.train()
    torch.manual_seed(2)
    losses = model.loss(inputs, samples)
    return losses, backbone_inputs[1], seen['mixed_logits']


def running_stats(model):
    return [
        (m.running_mean.clone(), m.running_var.clone())
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]


def test_raw_mode_running_statistics_come_from_the_raw_batch_only():
    model = build('raw')
    reference = copy.deepcopy(model).train()
    inputs, samples = batch()
    run_loss(model, inputs, samples)
    with torch.no_grad():  # one train-mode pass of the raw batch
        reference.extract_feat(inputs)
    for (mean, var), (ref_mean, ref_var) in zip(
        running_stats(model), running_stats(reference)
    ):
        torch.testing.assert_close(mean, ref_mean)
        torch.testing.assert_close(var, ref_var)


def test_batch_mode_running_statistics_also_take_the_mixed_batch():
    """The official behaviour: the mixed forward updates them too."""
    model = build('batch')
    reference = copy.deepcopy(model).train()
    inputs, samples = batch()
    _, mixed_inputs, _ = run_loss(model, inputs, samples)
    with torch.no_grad():
        reference.extract_feat(inputs)
        reference.extract_feat(mixed_inputs)
    for (mean, var), (ref_mean, ref_var) in zip(
        running_stats(model), running_stats(reference)
    ):
        torch.testing.assert_close(mean, ref_mean)
        torch.testing.assert_close(var, ref_var)


def raw_batch_statistics(model, inputs):
    """Each BN layer's batch mean and biased variance in a train-mode pass."""
    stats = {}

    def record(module, args):
        x = args[0]
        stats[module] = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))

    handles = [
        m.register_forward_pre_hook(record)
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    model.train()
    with torch.no_grad():
        model.extract_feat(inputs)
    for handle in handles:
        handle.remove()
    return stats


def test_raw_mode_mixed_logits_are_the_test_time_function_with_raw_statistics():
    """Each mixed copy is classified as the evaluated network would classify
    it if its running statistics were the raw batch's: per sample, whatever
    else is in the mixed batch."""
    model = build('raw')
    reference = copy.deepcopy(model)
    inputs, samples = batch()
    _, mixed_inputs, mixed_logits = run_loss(model, inputs, samples)
    for module, (mean, var) in raw_batch_statistics(reference, inputs).items():
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
    reference.eval()
    with torch.no_grad():
        expected = reference(mixed_inputs, mode='tensor')
        # per sample: the first three mixed copies alone give the same logits
        first = reference(mixed_inputs[:3], mode='tensor')
    torch.testing.assert_close(mixed_logits.detach(), expected)
    torch.testing.assert_close(first, expected[:3])


def test_raw_mode_gradient_flows_through_the_raw_statistics():
    """The ranking loss reaches the BN affine parameters and, through the raw
    batch's statistics, matches a finite difference of the loss in the
    first convolution's weight."""
    model = build('raw').double()
    inputs, samples = batch()
    inputs = inputs.double()
    losses, _, _ = run_loss(model, inputs, samples)
    rank = losses['loss_rank']
    conv = model.backbone.conv1
    (grad,) = torch.autograd.grad(rank, conv.weight)
    index = (0, 0, 1, 1)
    step = 1e-7  # BN on 8 samples is strongly curved: 1e-5 is off by 0.3 %
    values = []
    for sign in (1, -1):
        probe = copy.deepcopy(model)
        with torch.no_grad():
            probe.backbone.conv1.weight[index] += sign * step
        values.append(run_loss(probe, inputs, samples)[0]['loss_rank'])
    numeric = (values[0] - values[1]) / (2 * step)
    assert grad[index].item() == pytest.approx(numeric.item(), rel=1e-5)


@pytest.mark.parametrize(
    'config',
    [
        'rankmixup-mndcg-rawbn-fmnistsgd_resnet18-w8_fmnist.py',  # demo's stage
        'rankmixup-mndcg-rawbn_resnet18-w8_fmnist.py',
        'rankmixup-mrl-rawbn_resnet18-w8_fmnist.py',
    ],
)
def test_rawbn_config_trains_on_real_images_with_raw_batch_statistics(
    config, tmp_path, deterministic
):
    """A raw-BN RankMixup config (the demo's RankMixup stage uses the M-NDCG
    one), built by the Runner (its data preprocessor normalizes the images) on
    a real Fashion-MNIST batch: one training step leaves the running statistics
    a raw-batch update, and the mixed copies get the test-time function with
    the raw batch's statistics."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = str(tmp_path)
    shrink_data(cfg, subset_size=dict(train=64, val=64, test=64))
    cfg.train_dataloader.batch_size = 32
    model = Runner.from_cfg(cfg).model
    assert model.mixed_bn_stats == 'raw'
    data = model.data_preprocessor(
        next(iter(Runner.build_dataloader(cfg.train_dataloader))), True
    )
    inputs, samples = data['inputs'], data['data_samples']
    assert abs(float(inputs.mean())) < 0.5  # normalized, not raw pixels
    reference = copy.deepcopy(model)
    _, mixed_inputs, mixed_logits = run_loss(model, inputs, samples)
    stats = raw_batch_statistics(reference, inputs)  # also the raw-batch update
    for (mean, var), (ref_mean, ref_var) in zip(
        running_stats(model), running_stats(reference)
    ):
        torch.testing.assert_close(mean, ref_mean)
        torch.testing.assert_close(var, ref_var)
    for module, (mean, var) in stats.items():
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
    reference.eval()
    with torch.no_grad():
        expected = reference(mixed_inputs, mode='tensor')
    torch.testing.assert_close(mixed_logits.detach(), expected)
