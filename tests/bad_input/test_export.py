"""Bad input to the ONNX export (tools/export_onnx.py and ``export_onnx``):
one clear line naming the problem, before any work where possible."""

import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant import quantize_model
from mmcompress.quant.export import export_onnx

from ..e2e.runs import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'lsq_w8a8_fmnist.py')


def _tool():
    return load_script('tools', 'export_onnx.py')


def _run_tool(args):
    """The tool's exit message (it must exit with one line, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        _tool().main([str(a) for a in args])
    message = str(exit_info.value.code)
    assert message.startswith('export_onnx.py: error: ')
    assert '\n' not in message
    return message


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint of the W8A8 Fashion-MNIST QAT model (1-channel input)."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(CONFIG).model)
    path = tmp_path_factory.mktemp('ckpt') / 'qat.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def test_tool_shape_with_the_wrong_channel_count(checkpoint, tmp_path):
    """tools/export_onnx.py --shape with 3 channels for a 1-channel model.

    Message: does not fit the model: backbone.conv1 (Conv2d) takes 4-d input
    """
    out = tmp_path / 'model.onnx'
    message = _run_tool([CONFIG, checkpoint, '--out', out, '--shape', 1, 3, 28, 28])
    assert (
        '--shape 1 3 28 28: the example input of shape (1, 3, 28, 28) does '
        'not fit the model: backbone.conv1 (Conv2d) takes 4-d input '
        '(N, 1, ...) with 1 channels' in message
    )
    assert 'expected input[1, 3, 28, 28] to have 1 channels' in message
    assert not out.exists()


def test_tool_shape_with_a_zero_size(checkpoint, tmp_path):
    """tools/export_onnx.py --shape with a zero or negative size.

    Message: every size must be positive
    """
    message = _run_tool(
        [CONFIG, checkpoint, '--out', tmp_path / 'm.onnx', '--shape', 0, 1, 28, 28]
    )
    assert '--shape 0 1 28 28: every size must be positive' in message


def test_tool_output_folder_that_cannot_be_created(tmp_path):
    """tools/export_onnx.py --out in a folder that cannot be created (checked first).

    Message: cannot create the output folder
    """
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    # the config does not exist: the output is checked first, before any work
    message = _run_tool(
        ['no_such_config.py', 'no_such.pth', '--out', blocker / 'model.onnx']
    )
    assert (
        f'--out {blocker}/model.onnx: cannot create the output folder '
        f'{blocker}' in message
    )


def test_tool_output_is_a_folder(tmp_path):
    """tools/export_onnx.py --out given an existing folder instead of a file path.

    Message: is a folder; give the path of the .onnx file to write
    """
    message = _run_tool(['no_such_config.py', 'no_such.pth', '--out', tmp_path])
    assert (
        f'--out {tmp_path} is a folder; give the path of the .onnx file '
        f'to write, e.g. {tmp_path}/model.onnx' in message
    )


def test_export_onnx_example_input_of_the_wrong_shape():
    """export_onnx (Python API) given an example input the model cannot take.

    Message: the example input of shape (1, 8) does not fit the model
    """
    torch.manual_seed(0)
    model = quantize_model(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 2)),
        w=dict(type='LSQQuantizer', bits=8),
        keep_first_float=False,
        keep_output_float=False,
    )
    model(torch.rand(2, 1, 4, 4))
    with pytest.raises(
        ValueError,
        match=r'the example input of shape \(1, 8\) '
        r'does not fit the model: 0 \(QuantConv2d\) takes 4-d '
        r'input \(N, 1, \.\.\.\) with 1 channels \(torch: ',
    ):
        export_onnx(model, torch.rand(1, 8))
    with pytest.raises(
        ValueError,
        match=r'shape \(1, 1, 5, 5\) does not fit '
        r'the model: 2 \(QuantLinear\) takes input whose last '
        'dimension is 16',
    ):
        export_onnx(model, torch.rand(1, 1, 5, 5))
