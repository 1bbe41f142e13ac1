"""benchmarks/ptq_scenes.py: the onnxruntime anchor excludes exactly the layers
the PTQ config keeps float (ONNX node -> module mapping on the real exported
graphs), and the table's mean / std / difference to FP32."""

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.quant.export import export_onnx
from mmcompress.quant.export.network import NetworkWrapper
from mmcompress.registry import MODELS

from ..e2e.runs import load_script

ptq_scenes = load_script('benchmarks', 'ptq_scenes.py')
KINDS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)


@pytest.mark.parametrize('task', ['det', 'seg', 'pose'])
def test_onnx_nodes_map_to_their_modules(task):
    """Every Conv / ConvTranspose node of the float network's graph maps to a
    conv module of the model (Sequential children, a head conv called once per
    FPN level), every conv module has a node, and the float layers of the PTQ
    config are among them."""
    cfg = Config.fromfile(ptq_scenes.TASKS[task]['w8'])
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model.model).eval()
        wrapper = NetworkWrapper(model)
        size = 64 if task == 'pose' else 128
        example = torch.randn(1, 3, size, size)
        with torch.no_grad():
            wrapper(example)
        data = export_onnx(
            wrapper, example, output_names=wrapper.output_names(), quantized=False
        )
    import onnx

    nodes = [
        n.name
        for n in onnx.load_from_string(data).graph.node
        if n.op_type in ('Conv', 'ConvTranspose')
    ]
    convs = {n for n, m in model.named_modules() if isinstance(m, KINDS)}
    mapped = [ptq_scenes.node_module(n) for n in nodes]
    assert set(mapped) == convs
    if task == 'det':  # the shared head convs run once per FPN level
        assert mapped.count('bbox_head.retina_cls') == 3
    keep = ptq_scenes.float_layers(ptq_scenes.TASKS[task]['w8'])
    expected = dict(
        det=['backbone.conv1', 'bbox_head.retina_cls', 'bbox_head.retina_reg'],
        seg=['backbone.stem.0', 'decode_head.conv_seg'],
        pose=['backbone.conv1', 'head.final_layer'],
    )
    assert keep == expected[task]


def test_node_module_by_hand():
    node_module = ptq_scenes.node_module
    assert node_module('/backbone/layer2/layer2.0/downsample/downsample.0/Conv') == (
        'backbone.layer2.0.downsample.0'
    )
    assert (
        node_module('/bbox_head/cls_convs.1/conv_2/Conv')
        == 'bbox_head.cls_convs.1.conv'
    )
    assert node_module('/neck/lateral_convs.0/conv/Conv') == 'neck.lateral_convs.0.conv'


def test_table_mean_std_and_difference_to_fp32():
    records = [
        dict(task='seg', row='fp32', seed=0, value=26.0),
        dict(task='seg', row='w8a8-minmax', seed=1, value=25.0),
        dict(task='seg', row='w8a8-minmax', seed=0, value=27.0),
        dict(task='det', row='fp32', seed=0, value=1.0),
    ]
    lines = ptq_scenes.table(records, 'seg').splitlines()
    assert lines[0].startswith('| setting | mIoU mean |')
    assert lines[2] == '| FP32 (PyTorch) | 26.00 | 0.00 | 26.00 | +0.00 |'
    # sample std of 25 and 27; seeds listed in order
    assert lines[3] == (
        '| W8A8 PTQ min-max | 26.00 | 1.41 | 27.00 (0), 25.00 (1) | +0.00 |'
    )
    assert len(lines) == 4
