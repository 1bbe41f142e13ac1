"""FFL classifier: loss numerics against the official formulas, ramp-up,
structure, bad input, and short real training on Fashion-MNIST."""

import math
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.logging import MessageHub  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from mmcompress.distill.ffl import (
    FFLClassifier,
    FFLFusionModule,  # noqa
    ffl_rampup_weight,
)
from mmcompress.registry import MODELS  # noqa: E402
from mmcompress.testing import shorten_schedule, shrink_data  # noqa: E402

torch.set_num_threads(1)

FMNIST_ROOT = '/usr/share/datasets/fashion-mnist'
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tiny_backbone(**overrides):
    cfg = dict(
        type='ResNet_CIFAR',
        depth=18,
        in_channels=1,
        stem_channels=8,
        base_channels=8,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
    )
    cfg.update(overrides)
    return cfg


def build_ffl(**kwargs):
    cfg = dict(
        type='FFLClassifier',
        backbone=tiny_backbone(),
        num_classes=10,
        split_stage=2,
        data_preprocessor=dict(mean=[72.94], std=[90.02], to_rgb=False),
    )
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.fixture(autouse=True)
def fresh_message_hub():
    hub = MessageHub.get_current_instance()
    hub.update_info('epoch', 0)
    hub.update_info('iter', 0)
    yield hub


def test_rampup_values():
    assert ffl_rampup_weight(0, 80) == pytest.approx(math.exp(-5))
    assert ffl_rampup_weight(40, 80) == pytest.approx(math.exp(-1.25))
    assert ffl_rampup_weight(79, 80) == pytest.approx(math.exp(-5 * (1 / 80) ** 2))
    assert ffl_rampup_weight(80, 80) == 1.0
    assert ffl_rampup_weight(300, 80) == 1.0
    assert ffl_rampup_weight(3, 0) == 1.0


def test_consistency_weight_follows_message_hub(fresh_message_hub):
    model = build_ffl(rampup_length=10, kd_weight=2.0)
    fresh_message_hub.update_info('epoch', 5)
    assert model.consistency_weight() == pytest.approx(2 * math.exp(-1.25))
    by_iter = build_ffl(rampup_length=100, rampup_unit='iter')
    fresh_message_hub.update_info('iter', 100)
    assert by_iter.consistency_weight() == 1.0


def np_log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def official_kl(pred, target, temperature=3.0):
    """The official FFL ``KLLoss``: q = softmax(target/T) + 1e-7."""
    q = np.exp(np_log_softmax(target / temperature)) + 1e-7
    log_p = np_log_softmax(pred / temperature)
    return temperature**2 * (q * (np.log(q) - log_p)).sum() / pred.shape[0]


def test_ffl_loss_numerics_on_fixed_logits():
    model = build_ffl(num_branches=3)
    gen = torch.Generator().manual_seed(0)
    branch = [torch.randn(4, 10, generator=gen) * 3 for _ in range(3)]
    fused = torch.randn(4, 10, generator=gen) * 3
    targets = torch.tensor([1, 0, 9, 4])
    losses = model.ffl_losses(branch, fused, targets, weight=0.5)
    b_np = [b.double().numpy() for b in branch]
    f_np = fused.double().numpy()
    for i, logits in enumerate(b_np):
        ce = -np_log_softmax(logits)[np.arange(4), targets.numpy()].mean()
        assert losses[f'loss_cls_branch{i}'].item() == pytest.approx(ce, rel=1e-5)
    ce_fused = -np_log_softmax(f_np)[np.arange(4), targets.numpy()].mean()
    assert losses['loss_cls_fused'].item() == pytest.approx(ce_fused, rel=1e-5)
    kd_branches = sum(official_kl(b, f_np) for b in b_np)
    assert losses['loss_kd_branches'].item() == pytest.approx(
        0.5 * kd_branches, rel=1e-5
    )
    ensemble = sum(b_np) / 3
    assert losses['loss_kd_fused'].item() == pytest.approx(
        0.5 * official_kl(f_np, ensemble), rel=1e-5
    )
    assert losses['kd_weight'].item() == 0.5


def test_kd_targets_are_detached():
    model = build_ffl()
    branch = [torch.randn(2, 10, requires_grad=True) for _ in range(2)]
    fused = torch.randn(2, 10, requires_grad=True)
    losses = model.ffl_losses(branch, fused, torch.tensor([0, 1]), 1.0)
    losses['loss_kd_branches'].backward()
    assert fused.grad is None and branch[0].grad is not None
    losses['loss_kd_fused'].backward()
    assert fused.grad is not None


def test_structure_shared_trunk_and_independent_branches():
    model = build_ffl(num_branches=3)
    assert isinstance(model, FFLClassifier)
    keys = model.state_dict().keys()
    assert any(k.startswith('backbone.layer2.') for k in keys)
    assert not any(k.startswith('backbone.layer3.') for k in keys)
    assert len(model.branches) == 3
    first = [p for p in model.branches[0].parameters()]
    second = [p for p in model.branches[1].parameters()]
    assert len(first) == len(second) > 0
    assert not torch.equal(first[0], second[0])
    inputs = torch.randn(2, 1, 28, 28)
    branch_logits, fused = model.forward_logits(inputs)
    assert [b.shape for b in branch_logits] == [(2, 10)] * 3
    assert fused.shape == (2, 10)
    features = model.extract_feat(inputs)
    assert features[0].shape == (2, 32, 7, 7)
    assert isinstance(model.fusion, FFLFusionModule)
    # every parameter receives a gradient (no unused parameters for DDP)
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
    losses = model(inputs, samples, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_branches_use_backbone_init_and_frozen_stages_stay_in_trunk():
    model = build_ffl(backbone=tiny_backbone(frozen_stages=2))
    model.init_weights()
    blocks = [branch.layer3[0] for branch in model.branches]
    # zero_init_residual of the backbone reaches the branch copies
    assert all(bool((block.norm2.weight == 0).all()) for block in blocks)
    assert not torch.equal(blocks[0].conv1.weight, blocks[1].conv1.weight)
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.branches.parameters())


@pytest.mark.parametrize('predict_from', ['fused', 'ensemble', 1])
def test_predict_from(predict_from):
    model = build_ffl(predict_from=predict_from).eval()
    inputs = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        branch, fused = model.forward_logits(inputs)
        expected = {
            'fused': fused,
            'ensemble': (branch[0] + branch[1]) / 2,
            1: branch[1],
        }[predict_from]
        samples = model(inputs, mode='predict')
    scores = torch.stack([s.pred_score for s in samples])
    assert torch.allclose(scores, expected.softmax(1), atol=1e-6)
    assert [int(s.pred_label) for s in samples] == expected.argmax(1).tolist()


def test_bad_configuration():
    with pytest.raises(
        ValueError,
        match=r'split_stage must be an int in '
        r'\[1, 2\]',
    ):
        build_ffl(split_stage=3)
    with pytest.raises(ValueError, match='split_stage'):
        build_ffl(split_stage=0)
    with pytest.raises(ValueError, match='num_branches'):
        build_ffl(num_branches=1)
    with pytest.raises(ValueError, match='predict_from'):
        build_ffl(predict_from='teacher')
    with pytest.raises(ValueError, match='predict_from'):
        build_ffl(predict_from=2)
    with pytest.raises(ValueError, match='frozen_stages'):
        build_ffl(backbone=tiny_backbone(frozen_stages=3))
    with pytest.raises(ValueError, match='rampup_unit'):
        build_ffl(rampup_unit='step')
    with pytest.raises(TypeError, match='ResNet-family'):
        build_ffl(backbone=dict(type='LeNet5', num_classes=10))
    model = build_ffl()
    with pytest.raises(ValueError, match='mode must be'):
        model(torch.randn(1, 1, 28, 28), mode='features')
    with pytest.raises(ValueError, match='share one shape'):
        model.fusion([torch.randn(1, 32, 7, 7), torch.randn(1, 32, 4, 4)])


def load_fmnist(split, count):
    from mmcompress.datasets import FashionMNISTDataset

    dataset = FashionMNISTDataset(split=split, subset_size=count)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    images = torch.from_numpy(np.stack([info['img'] for info in infos]))
    labels = torch.tensor([info['gt_label'] for info in infos])
    return images[:, None], labels


def to_batch(images, labels):
    return dict(
        inputs=images, data_samples=[DataSample().set_gt_label(int(y)) for y in labels]
    )


def train_ffl_on_fashion_mnist(seed=0, epochs=4, lr=0.02):
    """``epochs`` epochs of FFL on 960 Fashion-MNIST images (batch 32, SGD
    with momentum 0.9 and learning rate ``lr``).

    Returns:
        tuple: Test loss before and after, fused accuracy before and after
        (300 test images).
    """
    torch.manual_seed(seed)
    model = build_ffl(rampup_length=0)
    train_x, train_y = load_fmnist('train', 960)
    test_x, test_y = load_fmnist('test', 300)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))

    def eval_loss_and_accuracy():
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(to_batch(test_x, test_y))
            losses = model(**data, mode='loss')
            samples = model(data['inputs'], mode='predict')
        model.train()
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        accuracy = np.mean(
            [int(s.pred_label) == int(y) for s, y in zip(samples, test_y)]
        )
        return total.item(), accuracy

    loss_before, acc_before = eval_loss_and_accuracy()
    for _ in range(epochs):
        for start in range(0, 960, 32):
            model.train_step(
                to_batch(train_x[start : start + 32], train_y[start : start + 32]),
                optim,
            )
    loss_after, acc_after = eval_loss_and_accuracy()
    return loss_before, loss_after, acc_before, acc_after


@pytest.mark.skipif(
    not osp.exists(osp.join(FMNIST_ROOT, 'train-images-idx3-ubyte.gz')),
    reason='Fashion-MNIST (dataset-fashion-mnist) not installed',
)
def test_short_training_on_fashion_mnist_lowers_loss(fresh_message_hub, deterministic):
    """FFL learns: test loss and fused accuracy after 120 SGD steps.

    Deterministic: one thread and seed 0 (the ``deterministic`` fixture), so
    the outcome depends neither on the machine's cores nor on the test order.
    The outcome of so short a run is not a property of the method: measured
    over seeds 0-9 under 1 and 2 threads (20 runs), the loss ratio after /
    before spans 0.35-2.03 and the fused accuracy 0.21-0.74 (the same seed
    differs between thread counts, e.g. seed 3: ratio 0.83 vs 0.53); 15 of
    the 20 runs pass the thresholds below. Seed 0 gives ratio 0.461 and
    accuracy 0.670 with one thread (0.501 / 0.627 with two), clear of the
    thresholds 0.7 and 0.5. 2 epochs at lr 0.05 (ratio 0.47-1.17, accuracy
    0.41-0.66 over seeds 0-4, seed 0 at 0.545 / 0.650 against 0.6 / 0.6) left
    too little margin.
    """
    loss_before, loss_after, acc_before, acc_after = train_ffl_on_fashion_mnist(seed=0)
    print(
        f'FFL Fashion-MNIST: loss {loss_before:.3f} -> {loss_after:.3f}, '
        f'fused accuracy {acc_before:.3f} -> {acc_after:.3f}'
    )
    assert loss_after < 0.7 * loss_before
    assert acc_after > 0.5 > acc_before


@pytest.mark.skipif(
    not osp.exists(osp.join(FMNIST_ROOT, 'train-images-idx3-ubyte.gz')),
    reason='Fashion-MNIST (dataset-fashion-mnist) not installed',
)
def test_config_trains_with_runner(tmp_path, deterministic):
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/distill/mmpretrain/ffl_fmnist.py')
    )
    cfg.work_dir = str(tmp_path)
    shrink_data(cfg, 32, dict(train=640, val=200), splits=['train', 'val'])
    shorten_schedule(cfg, epochs=1, log_interval=1, param_scheduler=[])
    runner = Runner.from_cfg(cfg)
    assert isinstance(runner.model, FFLClassifier)
    runner.train()
    # 20 iterations leave the eval-mode accuracy at chance (10.0 measured):
    # the validation only has to run; learning shows in the training loss
    runner.val_loop.run()
    scalars = runner.message_hub.log_scalars
    train_loss = scalars['train/loss'].data[0]
    assert len(train_loss) == 20
    assert train_loss[-5:].mean() < 0.92 * train_loss[:5].mean()
    kd_fused = scalars['train/loss_kd_fused'].data[0]
    assert len(kd_fused) == 20 and np.isfinite(kd_fused).all()
    assert (kd_fused > 0).all()
    assert scalars['train/kd_weight'].current() == pytest.approx(math.exp(-5))
