"""Integer ONNX export of the scenes detector, segmentor and pose model.

The network part ``head(extract_feat(x))`` of each W8A8 QAT scenes model is
exported: the plain QDQ graph reproduces PyTorch, the integer graph runs its
quantized convs as onnxruntime ``QLinearConv`` kernels that compute exactly
what the rewritten graph means, and :class:`ORTModel` (the downstream's own
post-processing on onnxruntime outputs) predicts what the PyTorch model
predicts. The models are untrained (quantizers and BN statistics set by one
training-mode pass on random inputs): their outputs swing with a change of
the float summation order (a rounding flip, amplified by the random network:
PyTorch's own outputs for an image change with the batch it is in), so the
int8 graph is compared with its own QDQ meaning and the post-processing
through the float network; the int8 graphs of trained models are compared
with PyTorch by the stock metric in benchmarks/export_scenes.py
(docs/quant/export.md). The QDQ form's equality with PyTorch is tested per
layer type in tests/contract and on classifiers in test_export.py.
"""

import os.path as osp
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

import mmcompress  # noqa: F401
from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.quant.export import (
    NetworkWrapper,
    ORTModel,
    export_onnx,
    optimize_for_onnxruntime,
)
from mmcompress.quant.export.network import add_metadata
from mmcompress.testing import shrink_data

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(
    det='mmdet/lsq_w8a8_retinanet_r18-w16_scenes.py',
    seg='mmseg/lsq_w8a8_fcn_r18-w16_scenes.py',
    pose='mmpose/lsq_w8a8_topdown_heatmap_r18-w16_scenes.py',
)
# float layers of each config (stem conv, prediction convs) and how many
# times they run (RetinaNet's head runs on 3 levels)
FLOAT_CONVS = dict(det=1 + 2 * 3, seg=2, pose=2)


def _build(task, data_root):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'quant', CONFIGS[task]))
    point_config_at_scenes(cfg, data_root)
    shrink_data(cfg, batch_size=2)
    DefaultScope.get_instance(f'export_{task}', scope_name=cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    return cfg, model


def _batch(cfg, model):
    loader = Runner.build_dataloader(cfg.test_dataloader)
    return model.data_preprocessor(next(iter(loader)), False)


def _prepare(model, inputs):
    """Initialise the quantizers and set BN statistics on ``inputs``."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        NetworkWrapper(model)(inputs)
    model.eval()


def _run(blob, inputs, optimize=True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(blob, options, providers=['CPUExecutionProvider'])
    return session.run(None, {'input': inputs.numpy()})


def _predictions(samples, task):
    if task == 'det':
        return [
            torch.cat(
                [
                    s.pred_instances.bboxes,
                    s.pred_instances.scores[:, None],
                    s.pred_instances.labels[:, None].float(),
                ],
                1,
            )
            for s in samples
        ]
    if task == 'seg':
        return [s.pred_sem_seg.data.float() for s in samples]
    return [torch.as_tensor(s.pred_instances.keypoints) for s in samples]


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('scenes')
    out = {}
    for task in CONFIGS:
        out[task] = str(base / task)
        generate_scenes(task, out[task], seed=0, num_train=2, num_val=2)
    return out


@pytest.mark.parametrize('task', list(CONFIGS))
def test_network_exports_run_in_onnxruntime(task, roots, tmp_path, onnx_op_types):
    cfg, model = _build(task, roots[task])
    data = _batch(cfg, model)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(data['inputs'].shape, generator=generator)
    _prepare(model, inputs)
    wrapper = NetworkWrapper(model)
    with torch.no_grad():
        reference = wrapper(inputs)
    reference = (reference,) if isinstance(reference, torch.Tensor) else reference
    qdq = export_onnx(
        wrapper,
        inputs[:1],
        output_names=wrapper.output_names(),
        dynamic_size=True,
    )
    # the integer graph: every quantized conv an onnxruntime integer kernel,
    # computing what the rewritten graph means
    fast = optimize_for_onnxruntime(qdq, [inputs])
    ops = Counter(onnx_op_types(fast))
    # (the pose head's deconvs as their sub-pixel convs)
    quantized_runs = sum(
        1 for n in _graph(qdq).node if n.op_type in ('Conv', 'ConvTranspose')
    )
    quantized_runs -= FLOAT_CONVS[task]
    assert ops['QLinearConv'] == quantized_runs
    assert ops['Conv'] + ops['FusedConv'] == FLOAT_CONVS[task]
    assert ops['ConvTranspose'] == 0
    # BNs are folded, the pose head's after its deconvs too
    assert ops['BatchNormalization'] == 0
    for exact, kernels in zip(_run(fast, inputs, False), _run(fast, inputs)):
        # onnxruntime requantizes with its own rounding of near-ties: a few
        # flips, which the untrained network amplifies locally
        diff, peak = np.abs(exact - kernels), np.abs(exact).max()
        assert diff.mean() <= 0.01 * peak

    # ORTModel: the downstream's own post-processing on onnxruntime outputs
    # (the float network: its outputs do not swing)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        float_model = MODELS.build(cfg.model.model).eval()
    float_wrapper = NetworkWrapper(float_model)
    float_wrapper(data['inputs'])
    blob = export_onnx(
        float_wrapper,
        data['inputs'][:1],
        output_names=float_wrapper.output_names(),
        dynamic_size=True,
        quantized=False,
    )
    path = tmp_path / 'float.onnx'
    path.write_bytes(add_metadata(blob, float_wrapper.metadata()))
    # built from the config, as tools/test_onnx.py does (its own untrained
    # weights are unused: the ONNX file computes)
    ort_model = MODELS.build(
        dict(type='ORTModel', model=cfg.model.model, onnx=str(path))
    )
    assert isinstance(ort_model, ORTModel)
    with pytest.raises(ValueError, match='ORTModel runs mode="predict" only'):
        ort_model(data['inputs'], mode='tensor')
    with torch.no_grad():
        expected = _predictions(float_model.test_step(data), task)
        got = _predictions(ort_model.test_step(data), task)
    for want, have in zip(expected, got):
        assert want.shape == have.shape
        assert torch.allclose(want, have, atol=1e-3, rtol=1e-3)


def _graph(blob):
    import onnx

    return onnx.load_from_string(blob).graph
