"""Bad input to the deployment path: the integer rewrite, the network export
of OpenMMLab models, tools/export_onnx.py's calibration data and
tools/test_onnx.py."""

import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant import quantize_model
from mmcompress.quant.export import (
    NetworkWrapper,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)

from ..e2e.runs import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
W4A4 = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'lsq_w4a4_fmnist.py')
LSQ8 = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)


def _tool(name):
    return load_script('tools', f'{name}.py')


def _exit_message(main, args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    message = str(exit_info.value.code)
    assert '\n' not in message
    return message


class _SigmoidBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.second(torch.sigmoid(self.first(x)))


def test_op_the_integer_rewrite_cannot_map():
    """A model with an op between quantized layers that has no 8-bit form (Sigmoid).

    Message: the integer rewrite has no 8-bit form for these ops
    """
    torch.manual_seed(0)
    model = quantize_model(
        _SigmoidBetween(), keep_first_float=False, keep_output_float=False, **LSQ8
    )
    data = [torch.randn(2, 1, 8, 8) for _ in range(2)]
    model(torch.cat(data))
    model.eval()
    blob = export_onnx(model, data[0][:1])
    with pytest.warns(UserWarning, match=r'8-bit form for these ops.*Sigmoid x1'):
        fast = optimize_for_onnxruntime(blob, data)
    # a float island, never a wrong graph
    out = onnxruntime_session(fast).run(None, {'input': data[0].numpy()})[0]
    reference = model(data[0]).detach()
    assert (
        torch.from_numpy(out) - reference
    ).abs().max() < 0.05 * reference.abs().max()


class _TwoStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)
        self.rpn_head = nn.Conv2d(4, 4, 1)
        self.roi_head = nn.Linear(4, 4)

    def extract_feat(self, x):
        return self.backbone(x)


def test_export_of_a_two_stage_detector():
    """Exporting the network of a two-stage detector (Faster R-CNN: roi_head).

    Message: the roi_head needs proposals from Python
    """
    with pytest.raises(TypeError, match='roi_head needs proposals from Python'):
        NetworkWrapper(_TwoStage())


def test_test_onnx_with_a_missing_onnx_file(tmp_path):
    """tools/test_onnx.py given an ONNX path that does not exist.

    Message: is not a file (export it first)
    """
    missing = tmp_path / 'none.onnx'
    message = _exit_message(_tool('test_onnx').main, [W4A4, missing])
    assert f'{missing} is not a file (export it first)' in message


def test_int8_export_without_the_calibration_data(tmp_path):
    """tools/export_onnx.py (int8 default) when the config's test data cannot be read.

    Message: point the config at its data, or export --format qdq
    """
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(W4A4).model)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 28, 28), mode='tensor')
    checkpoint = tmp_path / 'qat.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    args = [W4A4, checkpoint, '--out', tmp_path / 'm.onnx', '--shape', 1, 1, 28, 28]
    args += ['--cfg-options', 'test_dataloader.dataset.data_root=/nonexistent/data']
    message = _exit_message(_tool('export_onnx').main, args)
    assert message.startswith('export_onnx.py: error: --format int8 calibrates')
    assert 'Fashion-MNIST file /nonexistent/data/' in message
    assert message.endswith('point the config at its data, or export --format qdq')
    assert not (tmp_path / 'm.onnx').exists()


def test_latency_budget_no_allocation_meets():
    """A mixed-precision latency budget below what even the fastest bits give.

    Message: no allocation meets the latency budget
    """
    from mmcompress.quant.mixed_precision import allocate_bits

    latency = {'conv1': {8: 1.0, None: 3.0}, 'conv2': {8: 2.0, None: 5.0}}
    sensitivity = {'conv1': {8: 0.1, None: 0.0}, 'conv2': {8: 0.2, None: 0.0}}
    with pytest.raises(ValueError) as error:
        allocate_bits(sensitivity, latency, budget=2.5)
    assert str(error.value) == (
        'no allocation meets the latency budget 2.5 ms: the fastest (conv1=8, '
        'conv2=8) takes 3 ms; raise the budget to at least 3 ms'
    )


def test_compress_with_an_unknown_recipe(tmp_path):
    """tools/compress.py --recipe naming a recipe that does not exist.

    Message: no such recipe; valid: mixed, ptq-int8, qat-int8, qat-w4a4, qat-w4a4-kd
    """
    args = [W4A4, tmp_path / 'c.pth', '--recipe', 'ptq-int4', '--work-dir', tmp_path]
    message = _exit_message(_tool('compress').main, args)
    assert message == (
        'compress.py: error: --recipe ptq-int4: no such recipe; valid: '
        'mixed, ptq-int8, qat-int8, qat-w4a4, qat-w4a4-kd'
    )


def test_compress_recipe_naming_a_missing_stage(tmp_path, monkeypatch):
    """A tools/compress.py recipe whose stages list a stage the tool does not have.

    Message: names stages ['distill'] that tools/compress.py does not have
    """
    tool = _tool('compress')
    (tmp_path / 'kd_int8.py').write_text("stages = ['distill', 'qat']\nquant = {}\n")
    monkeypatch.setattr(tool, 'RECIPES', str(tmp_path))
    args = [W4A4, tmp_path / 'c.pth', '--recipe', 'kd-int8', '--work-dir', tmp_path]
    message = _exit_message(tool.main, args)
    assert "recipe kd-int8 names stages ['distill'] that tools/compress.py" in message
    assert (
        'valid stages: float_test, sensitivity, latency, allocate, qat, kd_qat, ptq, '
        'qat_test, ptq_test, export, onnx_test' in message
    )


def _seed_mixed_stages(work):
    """Completed float_test / sensitivity / latency results of a 2-layer toy
    model, so that tools/compress.py resumes at the allocate stage."""
    import json

    tables = dict(
        float_test=dict(metrics={}),
        sensitivity={'conv1': {'8': 0.1, '4': 0.5}, 'conv2': {'8': 0.2, '4': 0.9}},
        latency=dict(
            load_average=[0.0, 0.0, 0.0],
            ms={n: {'float': 3.0, '8': 1.0, '4': 1.0} for n in ('conv1', 'conv2')},
            graph_ms={
                n: {'float': 3.0, '8': 1.0, '4': 1.0} for n in ('conv1', 'conv2')
            },
            gbops={n: {'float': 16.0, '8': 1.0, '4': 0.25} for n in ('conv1', 'conv2')},
        ),
    )
    for stage, result in tables.items():
        (work / stage).mkdir(parents=True)
        (work / stage / 'result.json').write_text(json.dumps(result))


def _mixed_args(tmp_path, *budget):
    work = tmp_path / 'work'
    args = [W4A4, tmp_path / 'c.pth', '--recipe', 'mixed', '--work-dir', work]
    return args + ['--shape', 1, 1, 28, 28, *budget]


def test_compress_mixed_budget_no_allocation_meets(tmp_path):
    """tools/compress.py --recipe mixed with a BOPs budget below the all-4-bit model.

    Message: no allocation meets the BOPs budget 0.3 GBOPs
    """
    _seed_mixed_stages(tmp_path / 'work')
    message = _exit_message(
        _tool('compress').main, _mixed_args(tmp_path, '--gbops', 0.3)
    )
    assert message == (
        'compress.py: error: --gbops 0.3: no allocation meets the BOPs budget 0.3 '
        'GBOPs: the cheapest (conv1=4, conv2=4) takes 0.5 GBOPs; raise the budget '
        'to at least 0.5 GBOPs'
    )


def test_compress_mixed_budget_that_keeps_every_layer_float(tmp_path):
    """tools/compress.py --recipe mixed with a latency budget the float model meets.

    Message: keeps every layer float, nothing to quantize
    """
    _seed_mixed_stages(tmp_path / 'work')
    message = _exit_message(
        _tool('compress').main, _mixed_args(tmp_path, '--latency-ms', 6)
    )
    assert message.startswith(
        'compress.py: error: --latency-ms 6: the least sensitive allocation within '
        'the budget keeps every layer float, nothing to quantize'
    )


def test_compress_mixed_without_a_budget(tmp_path):
    """tools/compress.py --recipe mixed without --latency-ms or --gbops.

    Message: pass exactly one budget, --latency-ms X or --gbops X (got 0)
    """
    _seed_mixed_stages(tmp_path / 'work')
    message = _exit_message(_tool('compress').main, _mixed_args(tmp_path))
    assert message == (
        'compress.py: error: recipe mixed allocates bits: pass exactly one budget, '
        '--latency-ms X or --gbops X (got 0)'
    )


def test_compress_mixed_rerun_with_another_budget(tmp_path):
    """tools/compress.py --recipe mixed rerun in its work dir with another budget.

    Message: holds the allocation for --gbops 1, not --gbops 2.0
    """
    _seed_mixed_stages(tmp_path / 'work')
    (tmp_path / 'work' / 'allocate').mkdir()
    allocated = '{"budget": ["--gbops", 1.0], "allocation": {}}'
    (tmp_path / 'work' / 'allocate' / 'result.json').write_text(allocated)
    message = _exit_message(_tool('compress').main, _mixed_args(tmp_path, '--gbops', 2))
    assert 'holds the allocation for --gbops 1.0, not --gbops 2.0' in message
    assert message.endswith('(or delete that folder and the later stages)')


def test_compress_kd_recipe_without_a_teacher(tmp_path):
    """tools/compress.py --recipe qat-w4a4-kd without --teacher.

    Message: recipe qat-w4a4-kd distils: pass --teacher CONFIG CHECKPOINT
    """
    work = tmp_path / 'work'
    (work / 'float_test').mkdir(parents=True)
    (work / 'float_test' / 'result.json').write_text('{"metrics": {}}')
    args = [W4A4, tmp_path / 'c.pth', '--recipe', 'qat-w4a4-kd', '--work-dir', work]
    message = _exit_message(_tool('compress').main, args)
    assert message == (
        'compress.py: error: recipe qat-w4a4-kd distils: pass --teacher CONFIG '
        'CHECKPOINT'
    )
