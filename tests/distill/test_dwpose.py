"""DWPose's pose distillation: the keypoint logit loss against hand-computed
values and the official formula, and the linear loss-weight decay of its first
stage (``schedule=dict(decay=...)``)."""

import math
import os.path as osp

import pytest
import torch
from mmengine.logging import MessageHub

from mmcompress.distill import LossWeightSchedule
from mmcompress.registry import MODELS


def randn(*shape, seed):
    return torch.randn(
        *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def kd(**kwargs):
    return MODELS.build(dict(type='DWPoseKDLoss', **kwargs))


def test_two_bin_keypoint_by_hand():
    """One keypoint, two bins: teacher probabilities (3/4, 1/4), student
    (1/2, 1/2); beta scales the logits before the softmax."""
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    teacher = torch.tensor([[[math.log(3.0) / 2, 0.0]]], dtype=torch.float64)
    student = torch.zeros(1, 1, 2, dtype=torch.float64)
    assert kd(beta=2.0)(student, teacher).item() == pytest.approx(expected, rel=1e-12)
    # with beta=1 the same teacher logits give (sqrt 3 / (sqrt 3 + 1), ...)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    by_hand = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert kd(beta=1.0)(student, teacher).item() == pytest.approx(by_hand, rel=1e-12)


def test_mean_over_samples_and_keypoints_and_weight():
    """Keypoints with KL a and 0, in two samples: the mean, times loss_weight."""
    a = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    teacher = torch.zeros(2, 2, 2, dtype=torch.float64)
    teacher[:, 0, 0] = math.log(3.0)
    student = torch.zeros(2, 2, 2, dtype=torch.float64)
    loss = kd(beta=1.0, loss_weight=0.1)(student, teacher)
    assert loss.item() == pytest.approx(0.1 * a / 2, rel=1e-12)


def official_simcc_kd(pred, pred_t, beta, weight):
    """The official KDLoss written out: per axis, KL summed over bins, summed
    over keypoints, averaged over samples; the two axes summed, divided by K."""
    total = 0.0
    num_joints = pred[0].shape[1]
    for s_axis, t_axis in zip(pred, pred_t):
        n, k, _ = s_axis.shape
        per_sample = torch.zeros(n, dtype=torch.float64)
        for i in range(n):
            for j in range(k):
                q = torch.softmax(t_axis[i, j] * beta, 0)
                log_p = torch.log_softmax(s_axis[i, j] * beta, 0)
                per_sample[i] += (q * (q.log() - log_p)).sum()
        total = total + weight * per_sample.mean()
    return total / num_joints


def test_simcc_pair_equals_the_official_kdloss():
    """An (x, y) SimCC pair passed as two levels is the official KDLoss."""
    pred = (randn(3, 4, 12, seed=0), randn(3, 4, 9, seed=1))
    pred_t = (randn(3, 4, 12, seed=2), randn(3, 4, 9, seed=3))
    expected = official_simcc_kd(pred, pred_t, beta=10.0, weight=0.1)
    loss = kd(beta=10.0, loss_weight=0.1)(list(pred), list(pred_t))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)


def test_heatmaps_are_keypoint_distributions_over_pixels():
    """(N, K, H, W) heatmaps give the loss of the (N, K, H*W) flattening, and
    0 for a student equal to its teacher."""
    student, teacher = randn(2, 3, 4, 5, seed=4), randn(2, 3, 4, 5, seed=5)
    loss = kd()
    assert loss(student, teacher).item() == pytest.approx(
        loss(student.flatten(2), teacher.flatten(2)).item(), rel=1e-12
    )
    assert loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_gradient_matches_finite_differences_and_skips_the_teacher():
    student = randn(2, 2, 6, seed=6).requires_grad_()
    teacher = randn(2, 2, 6, seed=7).requires_grad_()
    loss = kd(beta=3.0)
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher), (student,))
    loss(student, teacher).backward()
    assert teacher.grad is None


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match='beta must be > 0'):
        kd(beta=0)
    with pytest.raises(ValueError, match=r'N x K x L SimCC logits.*\(2, 5\)'):
        kd()(randn(2, 5, seed=0), randn(2, 5, seed=1))


@pytest.fixture
def hub():
    """A fresh current MessageHub whose info the test sets."""
    return MessageHub.get_instance('test_dwpose_schedule')


def test_linear_decay_by_iteration_and_by_epoch(hub):
    """DWPose's first stage: 1 - epoch / max_epochs (here per iteration too),
    multiplied with a warm-up."""
    hub.update_info('iter', 30)
    hub.update_info('max_iters', 300)
    hub.update_info('epoch', 3)
    hub.update_info('max_epochs', 10)
    assert LossWeightSchedule(decay='iter').factor() == pytest.approx(0.9)
    assert LossWeightSchedule(decay='epoch').factor() == pytest.approx(0.7)
    # warm-up (iter + 1) / 40 = 31 / 40, then the decay
    schedule = LossWeightSchedule(warmup_iters=40, decay='iter')
    assert schedule.factor() == pytest.approx(31 / 40 * 0.9)
    assert LossWeightSchedule().factor() == 1.0
    hub.update_info('iter', 299)
    assert LossWeightSchedule(decay='iter').factor() == pytest.approx(1 / 300)


def test_decay_before_training_and_bad_value(hub):
    """Without the maxima (no training loop yet) the decay factor is 1."""
    hub.update_info('iter', 0)
    hub.update_info('max_iters', None)
    assert LossWeightSchedule(decay='iter').factor() == 1.0
    with pytest.raises(ValueError, match=r"decay must be None, 'epoch' or 'iter'"):
        LossWeightSchedule(decay='linear')


def build_config(name):
    """The DistillModel of ``configs/psa/mmpose/<name>`` without checkpoints."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmcompress.models  # noqa: F401  (PSA backbones of the teacher)

    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs', 'psa', 'mmpose', name))
    cfg.model.teacher.checkpoint = None
    with DefaultScope.overwrite_default_scope('mmpose'):
        torch.manual_seed(0)
        return cfg, MODELS.build(cfg.model)


@pytest.mark.filterwarnings('ignore:.*has no checkpoint')
def test_stage1_config_feature_and_logit_terms_decay():
    """Stage 1: a 1x1 conv with bias maps the student's last backbone feature
    (128 channels) to the PSA teacher's (256); both terms decay per iteration."""
    cfg, model = build_config('dwpose-s1_r18-w32-psa-p_to_w16_scenes.py')
    (conv,) = model.adapters['feature'].layers
    assert isinstance(conv, torch.nn.Conv2d) and conv.bias is not None
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (128, 256, (1, 1))
    losses = model.distill_losses
    assert type(losses['logit']).__name__ == 'DWPoseKDLoss'
    assert (losses['logit'].beta, losses['logit'].loss_weight) == (10.0, 0.1)
    assert losses['feature'].loss_weight == 7e-5
    assert {e.name: e.schedule.decay for e in model._entries} == dict(
        feature='iter', logit='iter'
    )


@pytest.mark.filterwarnings('ignore:.*has no checkpoint')
def test_stage2_config_trains_the_head_alone_on_a_frozen_backbone():
    """Stage 2: no ground-truth loss, the backbone frozen with its BN
    statistics (eval mode in training), only the head trainable."""
    cfg, model = build_config('dwpose-s2_r18-w16_scenes.py')
    assert model.student_loss_weight == 0.0
    # student and teacher both start from the stage-1 student
    assert (
        cfg.load_from
        == cfg.stage1
        == ('work_dirs/dwpose-s1_r18-w32-psa-p_to_w16_scenes/iter_300_student.pth')
    )
    model.train()
    backbone = model.student.backbone
    assert not any(p.requires_grad for p in backbone.parameters())
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    trainable = {
        n.split('.')[1] for n, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {'head'}
    assert cfg.train_cfg.max_iters == 60  # 20 % of stage 1's 300


@pytest.mark.filterwarnings('ignore:.*has no checkpoint')
def test_scaled_configs_change_the_weights_and_the_stage2_learning_rate():
    """The arm with weights scaled to the heatmap loss: stage 1 differs from the
    official weights (7e-5, 0.1) only in them; stage 2 starts from that stage-1
    student at the learning rate stage 1 ends at (base lr x eta_min_ratio)."""
    from mmengine.config import Config

    cfg, model = build_config('dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes.py')
    losses = model.distill_losses
    assert losses['feature'].loss_weight == 1e-5
    assert (losses['logit'].beta, losses['logit'].loss_weight) == (10.0, 0.01)
    assert {e.name: e.schedule.decay for e in model._entries} == dict(
        feature='iter', logit='iter'
    )
    stage2 = Config.fromfile(
        osp.join(osp.dirname(cfg.filename), 'dwpose-s2-scaled_r18-w16_scenes.py')
    )
    assert (
        stage2.load_from
        == stage2.model.teacher.checkpoint
        == 'work_dirs/dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes/'
        'iter_300_student.pth'
    )
    cosine = cfg.param_scheduler[1]
    assert cosine.type == 'CosineAnnealingLR' and cosine.end == 300
    end_lr = cfg.optim_wrapper.optimizer.lr * cosine.eta_min_ratio
    assert stage2.optim_wrapper.optimizer.lr == pytest.approx(end_lr)
    assert stage2.model.distill.logit.loss.loss_weight == 1.0
    assert stage2.train_cfg.max_iters == 60
