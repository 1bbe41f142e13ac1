"""Recording values by module path (mmcompress.distill.recorders)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier, toy_batch  # noqa: E402

from mmcompress.distill.recorders import (
    FeatureRecorder,
    RecordSpec,  # noqa: E402
    StopForward,
)


def _recorder(model, **entries):
    return FeatureRecorder(
        model, {k: RecordSpec.parse(v) for k, v in entries.items()}, 'student'
    )


def _model():
    torch.manual_seed(0)
    return ToyClassifier().eval()


def test_module_outputs_tuple_index_and_list_spec():
    model = _model()
    x, _ = toy_batch()
    rec = _recorder(
        model,
        all_levels='backbone',
        second=dict(module='backbone', index=1),
        both=['backbone.stage1', dict(module='backbone.stage2')],
    )
    with torch.no_grad(), rec:
        model(x)
        x1, x2 = model.backbone(x)
    assert len(rec.get('all_levels')) == 2
    torch.testing.assert_close(rec.get('all_levels')[0], x1)
    torch.testing.assert_close(rec.get('second')[0], x2)
    assert [t.shape for t in rec.get('both')] == [x1.shape, x2.shape]


def test_inputs_and_method_return_values():
    model = _model()
    x, _ = toy_batch()
    rec = _recorder(
        model,
        fc_in=dict(module='head.fc', io='input'),
        pooled=dict(method='head.pre_logits'),
    )
    with torch.no_grad(), rec:
        model(x)
    expected = model.backbone(x)[1].mean((2, 3))
    torch.testing.assert_close(rec.get('fc_in')[0], expected)
    torch.testing.assert_close(rec.get('pooled')[0], expected)
    # nothing stays installed after the context
    assert 'pre_logits' not in model.head.__dict__
    assert 'forward' not in model.head.fc.__dict__


def test_direct_forward_calls_are_recorded():
    """``module.forward(x)`` (as mmdet/mmpose call heads) is recorded too."""
    model = _model()
    x, _ = toy_batch()
    rec = _recorder(model, logits='head', feats=dict(module='head', io='input'))
    with torch.no_grad(), rec:
        feats = model.backbone(x)
        logits = model.head.forward(feats)
    torch.testing.assert_close(rec.get('logits')[0], logits)
    assert len(rec.get('feats')) == 2  # the tuple of both stages


class SharedLayerNet(nn.Module):
    """Calls the same linear layer three times."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, x):
        for _ in range(3):
            x = self.layer(x)
        return x


def test_call_index_for_modules_called_several_times():
    torch.manual_seed(0)
    model = SharedLayerNet()
    x = torch.randn(2, 3)
    rec = _recorder(
        model,
        first=dict(module='layer'),
        second=dict(module='layer', call=1),
        last=dict(module='layer', call=-1),
        every=dict(module='layer', call='all'),
    )
    with torch.no_grad(), rec:
        out = model(x)
    y1 = model.layer(x)
    y2 = model.layer(y1)
    torch.testing.assert_close(rec.get('first')[0], y1)
    torch.testing.assert_close(rec.get('second')[0], y2)
    torch.testing.assert_close(rec.get('last')[0], out)
    assert len(rec.get('every')) == 3
    bad = _recorder(model, x=dict(module='layer', call=5))
    with torch.no_grad(), bad:
        model(x)
    with pytest.raises(RuntimeError, match=r'ran 3 time\(s\)'):
        bad.get('x')


def test_wrong_names_list_closest_valid_names():
    model = _model()
    with pytest.raises(KeyError, match='backbone.stage2'):
        _recorder(model, x='backbone.stage_2')
    with pytest.raises(KeyError, match='pre_logits'):
        _recorder(model, x=dict(method='head.pre_logit'))
    with pytest.raises(ValueError, match='exactly one'):
        RecordSpec.parse(dict(module='head', method='head.forward'))
    with pytest.raises(TypeError, match='Valid keys'):
        RecordSpec.parse(dict(module='head', idx=0))


def test_inplace_modification_is_detected_and_cloned():
    model = _model()
    x, _ = toy_batch()
    # BN output, later overwritten by the in-place ReLU of the same stage
    rec = _recorder(model, bn='backbone.stage1.1')
    with torch.no_grad(), rec:
        model(x)
    with pytest.raises(RuntimeError, match='modified in place'):
        rec.get('bn')
    assert rec.mark_inplace_clones() == ['output of backbone.stage1.1']
    with torch.no_grad(), rec:
        model(x)
    expected = model.backbone.stage1[1](model.backbone.stage1[0](x))
    assert (expected < 0).any()  # the value before the ReLU
    torch.testing.assert_close(rec.get('bn')[0], expected)


def test_stop_forward_after_last_needed_call():
    model = _model()
    x, _ = toy_batch()
    rec = _recorder(model, s1='backbone.stage1')
    first = rec.specs['s1'][0]
    rec.stop_after = {id(first): 1}
    with torch.no_grad(), rec:
        with pytest.raises(StopForward):
            model(x)
    assert model.head.calls == 0
    assert rec.get('s1')[0].shape == (4, 8, 8, 8)
