"""benchmarks/export_speed.py times what it names: the FP32 and the int8
graph of one stock network with the same weights (their outputs agree up to
the 8-bit grids), every quantized conv an onnxruntime integer kernel, the
timing interleaved."""

import numpy as np
import torch

from ..e2e.runs import load_script

export_speed = load_script('benchmarks', 'export_speed.py')


def test_syncbn_becomes_bn_everywhere():
    cfg = dict(
        backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
        heads=[dict(norm_cfg=dict(type='SyncBN')), dict(type='FCNHead')],
    )
    plain = export_speed._plain_bn(cfg)
    assert plain.backbone.norm_cfg == dict(type='BN', requires_grad=True)
    assert [h['norm_cfg']['type'] for h in plain.heads[:1]] == ['BN']
    assert plain.heads[1].type == 'FCNHead'


def test_fp32_and_int8_graphs_are_one_network(deterministic):
    from mmcompress.quant.export import NetworkWrapper, onnxruntime_session

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    float_model, quantized = export_speed.build_models('seg', x)
    # the same weights and BN statistics; quantizers initialised
    weights = quantized.state_dict()
    for key, value in float_model.state_dict().items():
        assert torch.equal(weights[key], value), key
    assert quantized.backbone.layer1[0].conv1.act_quantizer.initialized.item() == 1
    graphs = export_speed.build_graphs(float_model, quantized, x)
    outputs = {}
    for key, model in (('fp32', float_model), ('int8', quantized)):
        session = onnxruntime_session(graphs[key], flush_denormals=True)
        with torch.no_grad():
            reference = NetworkWrapper(model)(x).numpy()
        outputs[key] = (session.run(None, {'input': x.numpy()})[0], reference)
    got, want = outputs['fp32']
    assert got.shape == (1, 19, 8, 8)  # Cityscapes classes at stride 8
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
    # the int8 graph follows the QAT model (its own 8-bit roundings, which
    # the random network amplifies: measured correlation 0.93)
    got, want = outputs['int8']
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.85
    # the stem and conv_seg stay float (the recipe), the rest is integer
    assert export_speed.conv_kernels(graphs['int8']) == dict(integer=24, float=2)
    assert export_speed.conv_kernels(graphs['fp32'])['integer'] == 0


class _Session:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def run(self, names, feed):
        self.log.append(self.name)


def test_timing_is_interleaved_after_the_warmup():
    log = []
    sessions = dict(a=_Session(log, 'a'), b=_Session(log, 'b'))
    medians = export_speed.interleaved_medians(sessions, {}, runs=3, warmup=2)
    assert log == ['a', 'b'] * 5
    assert set(medians) == {'a', 'b'} and all(v >= 0 for v in medians.values())
