"""tools/export_onnx.py: the integer graph for onnxruntime is the default,
the plain QDQ graph the named option ``--format qdq``."""

import json
import os.path as osp
from collections import Counter

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant.export import onnxruntime_session
from mmcompress.quant.export.network import output_structure
from tests.e2e.runs import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'lsq_w8a8_fmnist.py')


def _tool():
    return load_script('tools', 'export_onnx.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The W8A8 Fashion-MNIST QAT model (output quantizers, integer bias),
    its quantizers initialised by one training-mode pass."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(CONFIG).model)
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 28, 28), mode='tensor')
    path = tmp_path_factory.mktemp('ckpt') / 'qat.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _export(checkpoint, out, *options, capsys):
    _tool().main(
        [CONFIG, str(checkpoint), '--out', str(out), '--shape', '1', '1', '28', '28']
        + list(options)
    )
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_default_is_the_integer_graph_and_qdq_the_option(
    checkpoint, tmp_path, capsys, onnx_op_types
):
    default = _export(checkpoint, tmp_path / 'default.onnx', capsys=capsys)
    assert default['format'] == 'int8'
    qdq = _export(
        checkpoint,
        tmp_path / 'qdq.onnx',
        '--format',
        'qdq',
        '--verify',
        '500',
        capsys=capsys,
    )
    assert qdq['format'] == 'qdq'
    assert qdq['top1_agreement'] == 1.0  # the QAT model as it computes
    fast = Counter(onnx_op_types((tmp_path / 'default.onnx').read_bytes()))
    plain = Counter(onnx_op_types((tmp_path / 'qdq.onnx').read_bytes()))
    # onnxruntime runs the default graph's quantized convs as integer
    # kernels, the QDQ graph's in float (Conv, or FusedConv with a Relu)
    assert plain['QLinearConv'] == 0
    assert fast['QLinearConv'] == plain['Conv'] + plain['FusedConv'] - fast['Conv']
    assert fast['QLinearConv'] >= 10 and fast['Conv'] <= 1  # the float stem
    assert fast['QLinearAdd'] >= plain['QLinearAdd']
    # the old flag names the default
    args = _tool().build_parser().parse_args([CONFIG, 'c', '--out', 'o', '--ort-int8'])
    assert args.format == 'int8' and args.ort_int8
    # the output nesting ORTModel rebuilds is stored in the file
    session = onnxruntime_session((tmp_path / 'default.onnx').read_bytes())
    assert output_structure(session).num_leaves == 1
    assert [o.name for o in session.get_outputs()] == ['output']
