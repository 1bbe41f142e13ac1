"""onnxruntime per-operator profile (mmcompress.utils.ort_profile)."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from mmcompress.utils.ort_profile import onnxruntime_op_profile


def _onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (example,),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=['input'],
        output_names=['output'],
    )
    return buffer.getvalue()


def test_profile_counts_each_kernel_once_per_inference_by_type():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.LayerNorm(8), nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16)
    )
    x = torch.randn(4, 3, 8)
    prof = onnxruntime_op_profile(
        _onnx(model, x), {'input': x.numpy()}, runs=4, warmup=2
    )
    assert prof['nodes']['LayerNormalization'] == 2
    assert prof['nodes']['Relu'] == 1
    assert set(prof['op_ms']) == set(prof['nodes'])
    assert all(ms >= 0 for ms in prof['op_ms'].values())
    assert prof['op_ms']['LayerNormalization'] > 0
    assert prof['run_ms'] > 0


def test_profile_reads_a_model_file(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2), nn.Softmax(dim=-1))
    x = torch.randn(2, 4)
    path = tmp_path / 'm.onnx'
    path.write_bytes(_onnx(model, x))
    prof = onnxruntime_op_profile(str(path), {'input': x.numpy()}, runs=2, warmup=0)
    assert prof['nodes']['Softmax'] == 1


@pytest.mark.parametrize('bad', [dict(runs=0), dict(warmup=-1), dict(threads=0)])
def test_profile_bad_counts_are_named(bad):
    model = nn.Linear(4, 2)
    x = torch.randn(2, 4)
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        onnxruntime_op_profile(
            _onnx(model, x), {'input': x.numpy().astype(np.float32)}, **bad
        )
