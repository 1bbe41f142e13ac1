"""Bad input to the quantization transform (``quant=dict(...)`` of
``QuantizedModel``, ``quantize_model``, ``quantize_``): quantizing nothing or
less than asked is an error or a warning naming the layers and the fix."""

import pytest
import torch.nn as nn

from mmcompress.quant import QuantConfig, quantize_, quantize_model

W4 = dict(type='LSQQuantizer', bits=4)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        self.neck = nn.Conv2d(4, 4, 1)
        self.head = nn.Module()
        self.head.fc = nn.Linear(4, 3)


@pytest.mark.parametrize(
    'options',
    [
        dict(exclude=['*']),
        dict(include=['backbone.0', 'head.fc']),
        dict(exclude=['backbone.*', 'neck']),
    ],
)
def test_rules_leave_no_layer_to_quantize(options):
    """include / exclude / keep-float rules that together leave no layer.

    Message: no layer left to quantize
    """
    with pytest.raises(
        ValueError,
        match=r'no layer left to quantize: include .* '
        r'keep all of them float: .*\((exclude|keep_first_float|'
        r'keep_output_float)\).*Fix: narrow exclude',
    ):
        quantize_model(Net(), w=W4, **options)


def test_filter_fn_leaves_no_layer_to_quantize():
    """A quantize_ filter_fn that refuses every layer.

    Message: no layer left to quantize
    """
    with pytest.raises(
        ValueError,
        match=r'no layer left to quantize.*'
        r'backbone\.2 \(filter_fn\)',
    ):
        quantize_(Net(), QuantConfig(w=W4), filter_fn=lambda m, n: False)


def test_include_pattern_whose_layers_are_all_removed():
    """An include pattern whose layers exclude or keep-float rules all remove again.

    Message: but other rules keep all of them float
    """
    with pytest.warns(
        UserWarning,
        match=r"include pattern 'head\.\*' selects 1 "
        r'layer\(s\) but other rules keep all of them float: '
        r'head\.fc \(keep_output_float\).*Fix',
    ):
        model = quantize_model(Net(), w=W4, include=['backbone.*', 'head.*'])
    assert type(model.head.fc) is nn.Linear
    assert type(model.backbone[2]).__name__ == 'QuantConv2d'


def test_layer_override_on_a_layer_that_stays_float():
    """layer_overrides naming a layer that the selection rules keep float.

    Message: names only layers that stay float
    """
    with pytest.warns(
        UserWarning,
        match=r"layer_overrides\['backbone\.0'\] names "
        r'only layers that stay float: backbone\.0 '
        r'\(keep_first_float\); the override is ignored',
    ):
        quantize_model(
            Net(), w=W4, layer_overrides={'backbone.0': dict(w=dict(bits=8))}
        )


def test_layer_override_matching_nothing():
    """layer_overrides with a pattern that matches no layer (a typo).

    Message: layer_overrides pattern 'backbone.O' matches no
    """
    with pytest.raises(
        ValueError,
        match=r"layer_overrides pattern 'backbone\.O' "
        r"matches no .*Close names: \[.*'backbone\.0'",
    ):
        quantize_model(Net(), w=W4, layer_overrides={'backbone.O': dict(w=None)})


def test_layer_overrides_make_every_layer_float():
    """layer_overrides that set w, a and g to None for every selected layer.

    Message: nothing to quantize: layer_overrides set w, a and g to None
    """
    with pytest.raises(
        ValueError,
        match='nothing to quantize: layer_overrides '
        r"set w, a and g to None .*\['backbone\.2', 'neck'\]",
    ):
        quantize_model(Net(), w=W4, layer_overrides={'*': dict(w=None)})


def test_misspelled_quant_key():
    """A misspelled quant key (exlude instead of exclude).

    Message: unknown quant keys ['exlude']
    """
    with pytest.raises(
        ValueError,
        match=r'quantize_model: unknown quant keys '
        r"\['exlude'\]; valid keys: .*'exlude': did you mean "
        r"\['exclude'",
    ):
        quantize_model(Net(), w=W4, exlude=['neck'])
    with pytest.raises(
        ValueError,
        match=r'QuantizedModel: unknown quant keys '
        r"\['bits'\]",
    ):
        QuantConfig.from_dict(dict(w=W4, bits=4), 'QuantizedModel')
