"""onnxruntime per-operator profile (mmcompress.utils.ort_profile)."""

import pytest
import torch
from torch import nn

from mmcompress.quant.export import export_onnx
from mmcompress.utils.ort_profile import onnxruntime_op_profiles


def _onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    return export_onnx(model.eval(), example, dynamic_batch=False, quantized=False)


def test_profiles_count_each_model_kernels_once_per_inference_by_type(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8)
    norms = nn.Sequential(
        nn.LayerNorm(8), nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16)
    )
    path = tmp_path / 'softmax.onnx'
    path.write_bytes(_onnx(nn.Sequential(nn.Linear(8, 2), nn.Softmax(-1)), x))
    profiles = onnxruntime_op_profiles(
        dict(norms=_onnx(norms, x), softmax=str(path)),
        {'input': x.numpy()},
        runs=4,
        warmup=2,
    )
    norms, softmax = profiles['norms'], profiles['softmax']
    assert norms['nodes']['LayerNormalization'] == 2
    assert norms['nodes']['Relu'] == 1
    assert 'Softmax' not in norms['nodes']
    assert softmax['nodes']['Softmax'] == 1
    assert 'LayerNormalization' not in softmax['nodes']
    for prof in profiles.values():
        assert set(prof['op_ms']) == set(prof['nodes'])
        assert all(ms >= 0 for ms in prof['op_ms'].values())
        assert prof['run_ms'] > 0
    assert norms['op_ms']['LayerNormalization'] > 0


@pytest.mark.parametrize('bad', [dict(runs=0), dict(warmup=-1), dict(threads=0)])
def test_profile_bad_counts_are_named(bad):
    x = torch.randn(2, 4)
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        onnxruntime_op_profiles(
            dict(m=_onnx(nn.Linear(4, 2), x)), {'input': x.numpy()}, **bad
        )


def test_profile_without_models_is_an_error():
    with pytest.raises(ValueError, match='no models'):
        onnxruntime_op_profiles({}, {})
