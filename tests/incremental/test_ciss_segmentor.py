"""IncrementalEncoderDecoder: decomposition, auxiliary classifier, stepping
from a previous-step checkpoint, frozen BN, the sigmoid inference rule."""

import math
from unittest import mock

import torch
from mmengine.registry import DefaultScope

from mmcompress.registry import MODELS
from tests.incremental.conftest import batch, tiny_segmentor_cfg


def build(**kwargs):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(tiny_segmentor_cfg(**kwargs))


def stepped(step0, **kwargs):
    """A step-1 model loaded from ``step0``'s state dict."""
    model = build(step=1, **kwargs)
    model.load_state_dict(step0.state_dict())
    return model


def test_decomposition_sums_back_to_the_class_logits():
    model = build(step=1)
    feats = torch.rand(2, 8, 4, 4)  # after BN + ReLU: >= 0
    pos, neg = model.classifier.decompose(feats)
    bias = torch.cat([h.bias for h in model.classifier.heads[1:]]).view(1, -1, 1, 1)
    logits = model.classifier(feats)[:, 1:]
    torch.testing.assert_close(pos + neg + bias, logits)
    assert (pos >= 0).all() and (neg <= 0).all()
    assert pos.shape == (2, 3, 4, 4)  # 2 + 1 classes, auxiliary excluded


def test_auxiliary_classifier_sends_no_gradient_to_the_features():
    model = build(step=0)
    inputs, samples = batch()
    model.train()
    feats = model.features(inputs)
    model.classifier(feats)[:, 0].sum().backward()
    assert model.classifier.heads[0].weight.grad.abs().sum() > 0
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert all(g.abs().sum() == 0 for g in grads)
    model.zero_grad()
    model.classifier(model.features(inputs))[:, 1].sum().backward()  # class head
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_previous_step_checkpoint_builds_the_frozen_previous_model():
    torch.manual_seed(0)
    step0 = build(step=0).eval()
    model = stepped(step0)
    previous = model.previous_model
    assert previous is not None and previous.step == 0
    own = {id(p) for p in model.parameters()}
    assert own.isdisjoint(id(p) for p in previous.parameters())
    assert not any(p.requires_grad for p in previous.parameters())
    assert set(model.state_dict()) == set(build(step=1).state_dict())
    model.train()
    assert not previous.training
    inputs, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(previous._forward(inputs), step0._forward(inputs))


def test_novel_classifier_starts_as_the_auxiliary_classifier():
    step0 = build(step=0)
    with torch.no_grad():
        step0.classifier.heads[0].weight.normal_()
        step0.classifier.heads[0].bias.fill_(-1.5)
    model = stepped(step0)
    head = model.classifier.heads[2]
    aux = step0.classifier.heads[0]
    torch.testing.assert_close(head.weight, aux.weight.expand_as(head.weight))
    torch.testing.assert_close(head.bias, torch.full((1,), -1.5))
    # official init_novel_classifier: no bias shift, the auxiliary classifier
    # itself is loaded unchanged (MiB's - log(K + 1) is for softmax heads only)
    torch.testing.assert_close(model.classifier.heads[0].bias, torch.full((1,), -1.5))
    torch.testing.assert_close(model.classifier.heads[0].weight, aux.weight)


def test_random_novel_init_keeps_the_new_head():
    torch.manual_seed(1)
    model = build(step=1, novel_init='random')
    before = model.classifier.heads[2].weight.detach().clone()
    model.load_state_dict(build(step=0).state_dict())
    torch.testing.assert_close(model.classifier.heads[2].weight, before)


def test_softmax_novel_init_shares_the_background_probability():
    """MiB: new rows are the background classifier, biases b - log(K + 1)."""
    step0 = build(step=0, split='2-2', head_type='softmax')
    with torch.no_grad():
        step0.classifier.heads[0].bias.fill_(0.7)
    model = build(step=1, split='2-2', head_type='softmax')
    model.load_state_dict(step0.state_dict())
    expected = torch.full((2,), 0.7 - math.log(3))
    torch.testing.assert_close(model.classifier.heads[2].bias, expected)
    torch.testing.assert_close(model.classifier.heads[0].bias, expected[:1])


def test_bn_and_dropout_are_frozen_from_step_one():
    model = build(step=1).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert not any(p.requires_grad for m in norms for p in m.parameters())
    assert all(m.training for m in build(step=0).train().modules())


def test_step_losses_and_fine_tuning():
    step0 = build(step=0)
    inputs, samples = batch()
    losses = stepped(step0).train().loss(inputs, samples)
    assert set(losses) == {
        'loss_mbce',
        'loss_ac',
        'loss_kd',
        'loss_dkd_pos',
        'loss_dkd_neg',
    }
    finetune = build(step=1, loss_weights=dict(kd=0, dkd_pos=0, dkd_neg=0))
    assert set(finetune.train().loss(inputs, samples)) == {'loss_mbce', 'loss_ac'}
    assert finetune.previous_model is None
    assert set(build(step=0).train().loss(inputs, samples)) == {'loss_mbce', 'loss_ac'}


def test_untrained_auxiliary_classifier_is_reported():
    """ac=0 leaves heads[0] untrained: the next step's 'aux' init would copy
    it, so the model says so (not on the last step: nothing follows it)."""
    target = 'mmcompress.incremental.segmentor.print_log'
    with mock.patch(target) as log:
        build(step=0, loss_weights=dict(ac=0))
    assert log.call_count == 1
    assert "step 1 with novel_init='aux'" in log.call_args.args[0]
    with mock.patch(target) as log:
        build(step=0)
        build(step=2, loss_weights=dict(ac=0))
    assert log.call_count == 0


def test_default_novel_init_is_the_official_rule():
    """train_voc.py: the new rows copy the auxiliary classifier only when the
    ac weight is > 0; MiB always copies the background classifier."""
    assert build(step=1).novel_init == 'aux'
    assert build(step=1, loss_weights=dict(ac=0)).novel_init == 'random'
    mib = dict(head_type='softmax', loss_weights=None)
    assert build(step=1, **mib).novel_init == 'aux'
    assert build(step=1, loss_weights=dict(ac=0), novel_init='aux').novel_init == 'aux'


def test_inference_is_the_official_sigmoid_rule():
    """Highest sigmoid score among the classes, background when none > 0.5."""
    torch.manual_seed(0)
    model = build(step=2).eval()
    inputs, samples = batch()
    with torch.no_grad():  # about half of the pixels without a class > 0.5
        tops = model._forward(inputs)[:, 1:].max(1).values.flatten().unique()
        top = (tops[len(tops) // 2] + tops[len(tops) // 2 - 1]) / 2
        for head in model.classifier.heads[1:]:
            head.bias -= top
    with torch.no_grad():
        pred = torch.stack(
            [s.pred_sem_seg.data[0] for s in model.predict(inputs, samples)]
        )
        logits = torch.nn.functional.interpolate(
            model._forward(inputs), size=(32, 32), mode='bilinear'
        )
    prob = logits.sigmoid()
    official = prob[:, 1:].argmax(1) + 1
    official[(prob[:, 1:] > 0.5).sum(1) == 0] = 0
    assert torch.equal(pred, official)
    assert (pred == 0).any() and (pred > 0).any()
