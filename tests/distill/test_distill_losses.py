"""Distillation losses checked against independent computations of the spec
formulas (numpy loops / hand-computed values), autograd gradcheck and bad
input handling."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcompress.distill.losses import (
    ATLoss,
    BCKDClassificationLoss,
    BCKDLocalizationLoss,
    ChannelWiseDivergenceLoss,
    DecoupledKDLoss,
    DenseSoftmaxKDLoss,
    DISTLoss,
    FeatureMSELoss,
    ICKDLoss,
    MGDLoss,
    PKDLoss,
    VanillaKDLoss,
)
from mmcompress.registry import MODELS

torch.set_num_threads(1)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_kl(q, p):
    """KL(q || p) of two 1-d distributions."""
    return sum(qi * math.log(qi / pi) for qi, pi in zip(q, p) if qi > 0)


def rand(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


# --------------------------------------------------------------- vanilla KD
def test_vanilla_kd_hand_value():
    # q = [0.75, 0.25], p = [0.5, 0.5]
    s = torch.zeros(1, 2)
    t = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert VanillaKDLoss()(s, t).item() == pytest.approx(expected, rel=1e-6)
    # tau^2 factor and loss_weight
    got = VanillaKDLoss(tau=2.0, loss_weight=3.0)(s, 2 * t).item()
    assert got == pytest.approx(3.0 * 4.0 * expected, rel=1e-6)


@pytest.mark.parametrize('reduction', ['batchmean', 'sum', 'mean'])
def test_vanilla_kd_reference(reduction):
    s, t, tau = rand(3, 5, seed=1), rand(3, 5, seed=2), 2.5
    per_sample = [
        np_kl(np_softmax(t[n].numpy() / tau), np_softmax(s[n].numpy() / tau))
        for n in range(3)
    ]
    total = sum(per_sample) * tau**2
    expected = {'batchmean': total / 3, 'sum': total, 'mean': total / 15}[reduction]
    got = VanillaKDLoss(tau=tau, reduction=reduction)(s, t)
    assert got.item() == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------- DKD
def dkd_reference(s, t, labels, tau, alpha, beta):
    """Per-sample TCKD and NCKD lists (official formulas, numpy loops)."""
    tckd, nckd = [], []
    for n in range(s.shape[0]):
        g = int(labels[n])
        p_s = np_softmax(s[n] / tau)
        p_t = np_softmax(t[n] / tau)
        tckd.append(np_kl([p_t[g], 1 - p_t[g]], [p_s[g], 1 - p_s[g]]) * tau**2)
        others = [c for c in range(s.shape[1]) if c != g]
        nckd.append(
            np_kl(np_softmax(t[n, others] / tau), np_softmax(s[n, others] / tau))
            * tau**2
        )
    return np.array(tckd), np.array(nckd)


@pytest.mark.parametrize(
    'tau,alpha,beta', [(4.0, 1.0, 8.0), (1.0, 1.0, 0.5), (2.0, 0.3, 2.0)]
)
def test_dkd_batchmean_reference(tau, alpha, beta):
    s, t = rand(4, 6, seed=3), rand(4, 6, seed=4)
    labels = torch.tensor([0, 5, 2, 2])
    tckd, nckd = dkd_reference(s.numpy(), t.numpy(), labels, tau, alpha, beta)
    expected = alpha * tckd.sum() / 4 + beta * nckd.sum() / 4
    loss = DecoupledKDLoss(alpha=alpha, beta=beta, tau=tau)
    assert loss(s, t, gt_labels=labels).item() == pytest.approx(expected, rel=1e-9)


def test_dkd_reductions_and_mmrazor_masking():
    s, t = rand(3, 5, seed=5), rand(3, 5, seed=6)
    labels = torch.tensor([1, 4, 0])
    tau, alpha, beta = 2.0, 1.0, 8.0
    tckd, nckd = dkd_reference(s.numpy(), t.numpy(), labels, tau, alpha, beta)
    summed = alpha * tckd.sum() + beta * nckd.sum()
    assert DecoupledKDLoss(tau=tau, reduction='sum')(
        s, t, gt_labels=labels
    ).item() == pytest.approx(summed, rel=1e-9)
    # 'mean' averages over the N x 2 (TCKD) and N x C (NCKD) tensors
    mean = alpha * tckd.sum() / 6 + beta * nckd.sum() / 15
    assert DecoupledKDLoss(tau=tau, reduction='mean')(
        s, t, gt_labels=labels
    ).item() == pytest.approx(mean, rel=1e-9)
    # the official "-1000 * onehot" NCKD masking gives the same value
    onehot = F.one_hot(labels, 5).double()
    nckd_masked = (
        F.kl_div(
            F.log_softmax(s / tau - 1000 * onehot, 1),
            F.softmax(t / tau - 1000 * onehot, 1),
            reduction='sum',
        )
        * tau**2
    )
    loss = DecoupledKDLoss(tau=tau)
    assert (loss.non_target_class_kd(s, t, labels) * 3).item() == pytest.approx(
        nckd_masked.item(), rel=1e-9
    )


def test_dkd_recovers_kd_decomposition():
    # KD = TCKD + (1 - p_g^T) * NCKD per sample (the DKD paper's identity)
    s, t = rand(1, 7, seed=7), rand(1, 7, seed=8)
    label, tau = torch.tensor([3]), 1.5
    p_gt = F.softmax(t / tau, dim=1)[0, 3].item()
    dkd = DecoupledKDLoss(alpha=1.0, beta=1 - p_gt, tau=tau)
    kd = VanillaKDLoss(tau=tau)
    assert dkd(s, t, gt_labels=label).item() == pytest.approx(kd(s, t).item(), rel=1e-9)


def test_dkd_bad_labels():
    s, t = torch.randn(2, 4), torch.randn(2, 4)
    loss = DecoupledKDLoss()
    with pytest.raises(TypeError, match='gt_labels'):
        loss(s, t)
    with pytest.raises(ValueError, match=r'\[0, 4\)'):
        loss(s, t, gt_labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r'shape \(2,\)'):
        loss(s, t, gt_labels=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match='integer'):
        loss(s, t, gt_labels=torch.tensor([0.0, 1.0]))


# --------------------------------------------------------------- DIST
def pearson(a, b):
    return np.corrcoef(a, b)[0, 1]


def test_dist_reference_and_dense():
    s, t, tau = rand(4, 5, seed=9), rand(4, 5, seed=10), 2.0
    y_s, y_t = np_softmax(s.numpy() / tau), np_softmax(t.numpy() / tau)
    inter = 1 - np.mean([pearson(y_s[n], y_t[n]) for n in range(4)])
    intra = 1 - np.mean([pearson(y_s[:, c], y_t[:, c]) for c in range(5)])
    expected = tau**2 * (1.0 * inter + 0.5 * intra)
    got = DISTLoss(beta=1.0, gamma=0.5, tau=tau)(s, t).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # dense logits (N, C, H, W) are pixels x classes
    dense_s, dense_t = rand(2, 5, 2, 3, seed=11), rand(2, 5, 2, 3, seed=12)
    flat = DISTLoss()(
        dense_s.permute(0, 2, 3, 1).reshape(-1, 5),
        dense_t.permute(0, 2, 3, 1).reshape(-1, 5),
    )
    assert DISTLoss()(dense_s, dense_t).item() == pytest.approx(flat.item())
    # identical predictions -> no loss
    assert DISTLoss()(s, s.clone()).item() == pytest.approx(0, abs=1e-5)


# --------------------------------------------------------------- feature MSE
def test_feature_mse_plain_and_mmrazor_l2():
    s, t = rand(2, 3, 2, 2, seed=13), rand(2, 3, 2, 2, seed=14)
    a, b = s.numpy(), t.numpy()
    assert FeatureMSELoss()(s, t).item() == pytest.approx(
        ((a - b) ** 2).mean(), rel=1e-9
    )
    expected = 0.0
    for n in range(2):
        u = a[n].ravel() / np.linalg.norm(a[n].ravel())
        v = b[n].ravel() / np.linalg.norm(b[n].ravel())
        expected += ((u - v) ** 2).sum()
    got = FeatureMSELoss(normalize=True, reduction='batchmean')(s, t)
    assert got.item() == pytest.approx(expected / 2, rel=1e-9)


# --------------------------------------------------------------- AT
def test_at_reference_with_different_channels():
    s, t = rand(2, 3, 2, 3, seed=15), rand(2, 5, 2, 3, seed=16)
    total = 0.0
    for n in range(2):
        q_s = (s[n].numpy() ** 2).mean(0).ravel()
        q_t = (t[n].numpy() ** 2).mean(0).ravel()
        q_s, q_t = q_s / np.linalg.norm(q_s), q_t / np.linalg.norm(q_t)
        total += ((q_s - q_t) ** 2).sum()
    assert ATLoss()(s, t).item() == pytest.approx(total / 12, rel=1e-9)


# --------------------------------------------------------------- PKD
def test_pkd_reference_and_invariance():
    s, t = rand(2, 3, 2, 2, seed=17), rand(2, 3, 2, 2, seed=18)
    a, b = s.numpy(), t.numpy()
    total = 0.0
    for c in range(3):
        x = a[:, c].ravel()
        y = b[:, c].ravel()
        x = (x - x.mean()) / (x.std(ddof=1) + 1e-6)
        y = (y - y.mean()) / (y.std(ddof=1) + 1e-6)
        total += ((x - y) ** 2).sum()
    # the fused standardisation divides by sqrt(std^2 + 1e-12), not by
    # std + 1e-6: equal up to ~1e-6 / std relative
    assert PKDLoss()(s, t).item() == pytest.approx(total / 24 / 2, rel=1e-5)
    # gradient: finite differences of the same loss
    s_grad = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: PKDLoss()(x, t), (s_grad,))
    # per-channel affine change of the teacher does not matter (Pearson)
    scale = torch.tensor([2.0, 0.5, 7.0], dtype=torch.float64)
    assert PKDLoss()(s, t * scale[:, None, None] + 3).item() == pytest.approx(
        PKDLoss()(s, t).item(), rel=1e-5
    )
    assert PKDLoss()(s, 4 * s + 1).item() == pytest.approx(0, abs=1e-9)


def test_pkd_constant_channel_and_single_value():
    s = rand(2, 2, 2, 2, seed=21)
    t = s.clone()
    t[:, 1] = 5.0  # a constant teacher channel standardises to 0
    loss = PKDLoss()(s, t)
    assert torch.isfinite(loss)
    # channel 1 of the student: 8 standardised values whose squares sum to
    # n - 1 = 7 (unbiased std); MSE over all 16 values, halved: 7 / 32
    assert loss.item() == pytest.approx(7 / 32, rel=1e-9)
    with pytest.raises(ValueError, match=r'at least 2 values.*\(1, 2, 1, 1\)'):
        PKDLoss()(rand(1, 2, 1, 1, seed=22), rand(1, 2, 1, 1, seed=23))


def test_pkd_resizes_student_or_teacher():
    s, t = rand(1, 2, 2, 2, seed=19), rand(1, 2, 4, 4, seed=20)
    up = F.interpolate(s, (4, 4), mode='bilinear')
    assert PKDLoss()(s, t).item() == pytest.approx(PKDLoss()(up, t).item())
    down = F.interpolate(t, (2, 2), mode='bilinear')
    assert PKDLoss(resize_stu=False)(s, t).item() == pytest.approx(
        PKDLoss()(s, down).item()
    )


# --------------------------------------------------------------- MGD
def test_mgd_mask_rate_fixed_seed():
    loss = MGDLoss(teacher_channels=4, lambda_mgd=0.65)
    torch.manual_seed(0)
    mask = loss.random_mask(torch.zeros(8, 4, 64, 64))
    assert mask.shape == (8, 1, 64, 64)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (mask == 0).float().mean().item() == pytest.approx(0.65, abs=0.01)
    torch.manual_seed(0)
    assert torch.equal(mask, loss.random_mask(torch.zeros(8, 4, 64, 64)))
    none_masked = MGDLoss(teacher_channels=4, lambda_mgd=0.0).random_mask(
        torch.zeros(2, 4, 8, 8)
    )
    assert bool((none_masked == 1).all())


def test_mgd_reference_with_align():
    s, t = rand(2, 3, 4, 4, seed=21).float(), rand(2, 5, 4, 4, seed=22).float()
    loss = MGDLoss(
        teacher_channels=5, student_channels=3, alpha_mgd=0.5, loss_weight=2.0
    )
    generator = loss.generators[0]
    torch.manual_seed(3)
    got = loss(s, t)
    torch.manual_seed(3)
    keep = (torch.rand(2, 1, 4, 4) <= 0.35).float()
    aligned = F.conv2d(s, generator.align.weight, generator.align.bias)
    conv1, conv2 = generator.generation[0], generator.generation[2]
    hidden = F.relu(F.conv2d(aligned * keep, conv1.weight, conv1.bias, 1, 1))
    generated = F.conv2d(hidden, conv2.weight, conv2.bias, padding=1)
    expected = 2.0 * 0.5 * ((generated - t) ** 2).sum() / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mgd_lazy_build_multi_level_and_state_dict():
    levels_s = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    levels_t = [torch.randn(2, 6, 4, 4), torch.randn(2, 6, 2, 2)]
    lazy = MGDLoss()
    assert len(lazy.generators) == 0
    lazy(levels_s, levels_t)
    assert len(lazy.generators) == 2
    torch.manual_seed(1)
    first = lazy(levels_s, levels_t)
    assert lazy.generators[1].align.weight.shape == (6, 3, 1, 1)
    restored = MGDLoss()
    restored.load_state_dict(lazy.state_dict())
    torch.manual_seed(1)
    assert restored(levels_s, levels_t).item() == pytest.approx(first.item())
    with pytest.raises(ValueError, match='num_levels'):
        MGDLoss(teacher_channels=6, student_channels=3)(levels_s, levels_t)
    with pytest.raises(ValueError, match=r'\(3, 6\)'):
        lazy([torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)], levels_t)
    with pytest.raises(ValueError, match='lambda_mgd'):
        MGDLoss(lambda_mgd=1.0)
    with pytest.raises(ValueError, match='teacher_channels'):
        MGDLoss(student_channels=3)


# --------------------------------------------------------------- ICKD
def ickd_reference(a, b, normalization, grid=(1, 1)):
    num, channels, height, width = a.shape
    rows, cols = grid
    ph, pw = height // rows, width // cols
    total = 0.0
    for i in range(rows):
        for j in range(cols):
            for n in range(num):
                grams = []
                for x in (a, b):
                    f = x[n, :, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw].reshape(
                        channels, -1
                    )
                    g = f @ f.T
                    grams.append(g / np.linalg.norm(g, axis=1, keepdims=True))
                total += ((grams[0] - grams[1]) ** 2).sum()
    denominator = channels * num * (num if normalization == 'imagenet' else 1)
    return total / denominator / (rows * cols)


@pytest.mark.parametrize('normalization', ['cifar', 'imagenet'])
@pytest.mark.parametrize('grid', [(1, 1), (2, 3)])
def test_ickd_reference(normalization, grid):
    s, t = rand(3, 4, 4, 6, seed=23), rand(3, 4, 4, 6, seed=24)
    expected = ickd_reference(s.numpy(), t.numpy(), normalization, grid)
    got = ICKDLoss(normalization=normalization, grid=grid)(s, t)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_ickd_default_and_spatial_mismatch_allowed():
    s, t = rand(2, 3, 4, 4, seed=25), rand(2, 3, 2, 2, seed=26)
    assert ICKDLoss().normalization == 'cifar'
    a, b = s.numpy(), t.numpy()
    total = 0.0
    for n in range(2):
        gs = a[n].reshape(3, -1) @ a[n].reshape(3, -1).T
        gt = b[n].reshape(3, -1) @ b[n].reshape(3, -1).T
        gs /= np.linalg.norm(gs, axis=1, keepdims=True)
        gt /= np.linalg.norm(gt, axis=1, keepdims=True)
        total += ((gs - gt) ** 2).sum()
    assert ICKDLoss()(s, t).item() == pytest.approx(total / 6, rel=1e-9)
    with pytest.raises(ValueError, match=r'grid \(3, 3\).*\(4, 4\)'):
        ICKDLoss(grid=3)(s, s)
    with pytest.raises(ValueError, match='grid'):
        ICKDLoss(grid=(0, 2))


# --------------------------------------------------------------- CWD
def test_cwd_reference():
    s, t, tau = rand(2, 3, 2, 2, seed=27), rand(2, 3, 2, 2, seed=28), 2.0
    total = 0.0
    for n in range(2):
        for c in range(3):
            total += np_kl(
                np_softmax(t[n, c].numpy().ravel() / tau),
                np_softmax(s[n, c].numpy().ravel() / tau),
            )
    expected = tau**2 * total / 6
    got = ChannelWiseDivergenceLoss(tau=tau)(s, t).item()
    assert got == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------- BCKD
def test_bckd_classification_hand_value_and_gradient():
    # p_t = [0.75, 0.5], p_s = [0.5, 0.5]: BCE(logit 0, p) = ln 2 for any p,
    # modulation = [0.25, 0] -> loss = 0.25 ln 2
    t = torch.tensor([[math.log(3.0), 0.0]])
    s = torch.zeros(1, 2, requires_grad=True)
    loss = BCKDClassificationLoss()(s, t, avg_factor=1.0)
    assert loss.item() == pytest.approx(0.25 * math.log(2), rel=1e-6)
    loss.backward()
    # d/ds [BCE * |p_t - sigmoid(s)|] at s=0: (0.5-0.75)*0.25 - ln2 * 0.25
    assert s.grad[0, 0].item() == pytest.approx(-0.0625 - 0.25 * math.log(2), rel=1e-6)
    s.grad = None
    BCKDClassificationLoss(detach_modulation=True)(s, t).backward()
    assert s.grad[0, 0].item() == pytest.approx(-0.0625, rel=1e-6)


def test_bckd_classification_reference():
    s, t = rand(5, 3, seed=29), rand(5, 3, seed=30)
    weight = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    beta = 2.0
    total = 0.0
    for a in range(5):
        for c in range(3):
            x, p_t = s[a, c].item(), 1 / (1 + math.exp(-t[a, c].item()))
            p_s = 1 / (1 + math.exp(-x))
            bce = -(p_t * math.log(p_s) + (1 - p_t) * math.log(1 - p_s))
            total += weight[a].item() * bce * abs(p_t - p_s) ** beta
    got = BCKDClassificationLoss(beta=beta, loss_weight=1.5)(
        s, t, weight=weight, avg_factor=3.0
    )
    assert got.item() == pytest.approx(1.5 * total / 3.0, rel=1e-9)
    # without avg_factor: divided by the number of anchors
    got = BCKDClassificationLoss(beta=beta)(s, t, weight=weight)
    assert got.item() == pytest.approx(total / 5, rel=1e-9)


def test_bckd_localization_hand_value():
    # boxes [0,0,2,2] vs [1,1,3,3]: IoU = 1/7, enclosing 9 -> GIoU = 1/7-2/9
    boxes_s = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    boxes_t = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    cls_s = torch.zeros(1, 2, requires_grad=True)
    cls_t = torch.tensor([[math.log(3.0), -math.log(3.0)]])  # max |dp|=0.25
    loss = BCKDLocalizationLoss()(
        boxes_s, boxes_t, cls_scores_S=cls_s, cls_scores_T=cls_t, avg_factor=2.0
    )
    giou = 1 / 7 - 2 / 9
    assert loss.item() == pytest.approx(4.0 * 0.25 * (1 - giou) / 2, rel=1e-6)
    loss.backward()
    assert boxes_s.grad is not None and cls_s.grad is None
    iou_loss = BCKDLocalizationLoss(iou_mode='iou', loss_weight=1.0)(
        boxes_s, boxes_t, cls_scores_S=cls_s, cls_scores_T=cls_t
    )
    assert iou_loss.item() == pytest.approx(0.25 * (1 - 1 / 7), rel=1e-6)


def test_bckd_skip_level_without_positives():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    boxes = torch.tensor([[0.0, 0, 2, 2]] * 4, requires_grad=True)
    cls_loss = BCKDClassificationLoss()
    loc_loss = BCKDLocalizationLoss()
    kwargs = dict(cls_scores_S=s, cls_scores_T=t)
    assert cls_loss(s, t, num_level_positives=0).item() == 0
    assert loc_loss(boxes, boxes + 1, num_level_positives=0, **kwargs).item() == 0
    assert cls_loss(s, t, num_level_positives=2).item() > 0
    keep = BCKDClassificationLoss(skip_level_without_positives=False)
    assert keep(s, t, num_level_positives=0).item() > 0
    cls_loss(s, t, num_level_positives=0).backward()


def test_bckd_bad_input():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match=r'\(4,\)'):
        BCKDClassificationLoss()(s, t, weight=torch.ones(3))
    with pytest.raises(ValueError, match='avg_factor'):
        BCKDClassificationLoss()(s, t, avg_factor=0)
    boxes = torch.rand(4, 4)
    with pytest.raises(ValueError, match='cls_scores_S'):
        BCKDLocalizationLoss()(boxes, boxes)
    with pytest.raises(ValueError, match='A x 4'):
        BCKDLocalizationLoss()(s, t, cls_scores_S=s, cls_scores_T=t)
    with pytest.raises(ValueError, match='iou_mode'):
        BCKDLocalizationLoss(iou_mode='diou')


def test_dense_softmax_kd_reference():
    s, t, tau = rand(3, 4, seed=31), rand(3, 4, seed=32), 2.0
    weight = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    total = sum(
        weight[a].item()
        * tau**2
        * np_kl(np_softmax(t[a].numpy() / tau), np_softmax(s[a].numpy() / tau))
        / 4
        for a in range(3)
    )
    got = DenseSoftmaxKDLoss(tau=tau)(s, t, weight=weight, avg_factor=2.0)
    assert got.item() == pytest.approx(total / 2.0, rel=1e-9)


# --------------------------------------------------------------- gradients
def _seeded(loss):
    """Wrap MGD so every gradcheck evaluation draws the same mask."""

    def call(s, t, **kwargs):
        torch.manual_seed(0)
        return loss(s, t, **kwargs)

    return call


GRADCHECK_CASES = [
    (VanillaKDLoss(tau=2.0), (3, 4), (3, 4), {}),
    (DecoupledKDLoss(), (3, 4), (3, 4), dict(gt_labels=torch.tensor([0, 3, 1]))),
    (DISTLoss(tau=2.0), (3, 4), (3, 4), {}),
    (
        FeatureMSELoss(normalize=True, reduction='batchmean'),
        (2, 3, 2, 2),
        (2, 3, 2, 2),
        {},
    ),
    (ATLoss(), (2, 3, 2, 2), (2, 2, 2, 2), {}),
    (PKDLoss(), (2, 2, 2, 2), (2, 2, 2, 2), {}),
    (ICKDLoss(grid=(2, 1)), (2, 3, 2, 2), (2, 3, 2, 2), {}),
    (ChannelWiseDivergenceLoss(tau=2.0), (2, 2, 2, 2), (2, 2, 2, 2), {}),
    (BCKDClassificationLoss(), (4, 3), (4, 3), {}),
    (DenseSoftmaxKDLoss(), (4, 3), (4, 3), {}),
    (
        MGDLoss(teacher_channels=3, student_channels=2).double(),
        (2, 2, 3, 3),
        (2, 3, 3, 3),
        {},
    ),
]


@pytest.mark.parametrize(
    'loss,shape_s,shape_t,kwargs',
    GRADCHECK_CASES,
    ids=lambda c: type(c).__name__ if isinstance(c, torch.nn.Module) else None,
)
def test_gradcheck(loss, shape_s, shape_t, kwargs):
    s = rand(*shape_s, seed=33).requires_grad_()
    t = rand(*shape_t, seed=34)
    fn = _seeded(loss) if isinstance(loss, MGDLoss) else loss
    assert torch.autograd.gradcheck(lambda x: fn(x, t, **kwargs), (s,))
    # the teacher never receives a gradient
    t.requires_grad_()
    fn(s, t, **kwargs).backward()
    assert t.grad is None


def test_gradcheck_bckd_localization():
    boxes_s = torch.tensor(
        [[0.0, 0.0, 2.0, 2.0], [1.0, 0.5, 4.0, 3.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    boxes_t = torch.tensor(
        [[1.0, 1.0, 3.0, 3.5], [0.0, 0.0, 2.0, 2.5]], dtype=torch.float64
    )
    cls_s, cls_t = rand(2, 3, seed=35), rand(2, 3, seed=36)
    loss = BCKDLocalizationLoss()
    assert torch.autograd.gradcheck(
        lambda b: loss(b, boxes_t, cls_scores_S=cls_s, cls_scores_T=cls_t), (boxes_s,)
    )


# --------------------------------------------------------------- common
def test_multi_level_sum_and_loss_weight():
    s = [rand(2, 3, 4, 4, seed=37), rand(2, 3, 2, 2, seed=38)]
    t = [rand(2, 3, 4, 4, seed=39), rand(2, 3, 2, 2, seed=40)]
    single = ChannelWiseDivergenceLoss()
    levels = single(s[0], t[0]) + single(s[1], t[1])
    weighted = ChannelWiseDivergenceLoss(loss_weight=5.0)(s, t)
    assert weighted.item() == pytest.approx(5 * levels.item(), rel=1e-9)
    with pytest.raises(ValueError, match='2 student and 1 teacher'):
        single(s, t[:1])
    with pytest.raises(ValueError, match='both be tensors'):
        single(s, t[0])


@pytest.mark.parametrize(
    'loss,shape_s,shape_t',
    [
        (VanillaKDLoss(), (2, 10), (2, 100)),
        (FeatureMSELoss(), (2, 8, 4, 4), (2, 16, 4, 4)),
        (ChannelWiseDivergenceLoss(), (2, 8, 4, 4), (2, 8, 8, 8)),
        (ICKDLoss(), (2, 8, 4, 4), (2, 16, 4, 4)),
        (PKDLoss(), (2, 8, 4, 4), (2, 16, 4, 4)),
        (ATLoss(), (2, 8, 4, 4), (2, 8, 8, 8)),
        (DISTLoss(), (2, 10), (2, 12)),
    ],
)
def test_shape_mismatch_names_both_shapes(loss, shape_s, shape_t):
    with pytest.raises(ValueError) as info:
        loss(torch.randn(*shape_s), torch.randn(*shape_t))
    message = str(info.value)
    assert str(shape_s) in message and str(shape_t) in message
    assert 'adapter' in message


def test_bad_arguments_and_dims():
    with pytest.raises(ValueError, match='tau must be > 0'):
        VanillaKDLoss(tau=0)
    with pytest.raises(ValueError, match='reduction must be one of'):
        VanillaKDLoss(reduction='avg')
    with pytest.raises(ValueError, match='loss_weight'):
        DISTLoss(loss_weight=-1)
    with pytest.raises(TypeError, match='beta must be a number'):
        DecoupledKDLoss(beta='8')
    with pytest.raises(ValueError, match='normalization'):
        ICKDLoss(normalization='voc')
    with pytest.raises(ValueError, match=r'N x C x H x W.*\(2, 3\)'):
        ATLoss()(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(TypeError, match='Tensor'):
        VanillaKDLoss()(torch.randn(2, 3), np.zeros((2, 3)))


def test_built_from_registry():
    loss = MODELS.build(
        dict(type='DecoupledKDLoss', tau=1.0, beta=0.5, loss_weight=2.0)
    )
    assert isinstance(loss, DecoupledKDLoss)
    assert (loss.tau, loss.beta, loss.loss_weight) == (1.0, 0.5, 2.0)
