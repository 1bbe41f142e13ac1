"""torch.compile of quantized models: no graph break in the forward of the
LSQ Fashion-MNIST QAT config, compiled training steps give the eager losses,
the QAT model of every quantizer compiles to one graph with the eager values
(the fused kernels as custom operators in the graph), and an initialization
inside a compiled call warns."""

import copy
import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import mmcompress  # noqa: F401  (registers the quantized model)
from mmcompress.quant import quantize_model
from mmcompress.quant.kernels import kernel_error, load_kernels
from mmcompress.quant.layers import QuantConv2d, QuantLayerMixin
from mmcompress.quant.quantizers import EWGSQuantizer, LSQQuantizer
from mmcompress.quant.quantizers import base as quantizer_base
from mmcompress.registry import MODELS
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
from tests.e2e.runs import run_tool_in_process

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LSQ = osp.join(REPO, 'configs/quant/mmpretrain/lsq_w4a4_fmnist.py')


def _lsq_model():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(Config.fromfile(LSQ).model)


def test_lsq_quantized_forward_is_one_graph(deterministic):
    model = _lsq_model().train()
    x = torch.randn(4, 1, 28, 28)
    model(x, mode='tensor')  # the quantizers initialize (eager)
    explain = torch._dynamo.explain(model)(x, mode='tensor')
    assert explain.graph_break_count == 0, [b.reason for b in explain.break_reasons]
    assert explain.graph_count == 1


def _train(model, batches, labels, lr=0.01):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for x in batches:
        loss = torch.nn.functional.cross_entropy(model(x, mode='tensor'), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_compiled_qat_steps_match_eager(deterministic):
    """The first compiled call initializes the quantizers (run eagerly inside
    the compiled frame), later calls reuse the recompiled graph."""
    model = _lsq_model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(4, 1, 28, 28) for _ in range(3)]
    labels = torch.tensor([0, 1, 2, 3])
    eager = _train(model, batches, labels)
    model.load_state_dict(state)
    quantizers = [m for m in model.modules() if isinstance(m, LSQQuantizer)]
    assert quantizers and not any(q._initialized_flag for q in quantizers)
    torch._dynamo.reset()
    compiled = _train(torch.compile(model, backend='aot_eager'), batches, labels)
    assert all(q._initialized_flag for q in quantizers)
    assert all(torch.isfinite(torch.tensor(compiled)))
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_flags_follow_reset_and_state_dict_load():
    quantizer = LSQQuantizer(4)
    quantizer.train()(torch.randn(8) - 0.5)
    assert quantizer._initialized_flag and quantizer._signed_flag
    state = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.reset_initialization()
    assert not quantizer._initialized_flag
    quantizer.load_state_dict(state)
    assert quantizer._initialized_flag and quantizer._signed_flag
    quantizer.signed.fill_(0)  # a direct buffer write, then sync_flags()
    quantizer.sync_flags()
    assert not quantizer._signed_flag and quantizer.qmin == 0


@pytest.mark.parametrize('fused', [False, True])
def test_compiled_lsq_quantizer_matches_eager(fused):
    """Also the fused kernel (custom ops with fake implementations)."""
    quantizer = LSQQuantizer(4, fused=fused).train()
    x = torch.randn(64, requires_grad=True)
    quantizer(x.detach())
    out = quantizer(x)
    out.sum().backward()
    grads = (x.grad.clone(), quantizer.step.grad.clone())
    x.grad = None
    quantizer.step.grad = None
    torch._dynamo.reset()
    compiled = torch.compile(quantizer, backend='aot_eager', fullgraph=True)
    out_c = compiled(x)
    out_c.sum().backward()
    torch.testing.assert_close(out_c, out)
    torch.testing.assert_close(x.grad, grads[0])
    torch.testing.assert_close(quantizer.step.grad, grads[1])


def _tiny_net():
    """Float stem conv, then a quantized conv (without bias) and linear."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    )


# (weight quantizer, activation quantizer) of each method's Fashion-MNIST config
# (eager LSQ: the tests above), and the fused kernels (custom operators in the
# graph)
QUANTIZERS = {
    'lsq_fused': (
        dict(type='LSQQuantizer', bits=4, signed=True, fused=True),
        dict(type='LSQQuantizer', bits=4, fused=True),
    ),
    'ewgs': (
        dict(type='EWGSQuantizer', bits=4, role='weight', delta=1e-3),
        dict(type='EWGSQuantizer', bits=4, role='activation', delta=1e-3),
    ),
    'ewgs_fused': (
        dict(type='EWGSQuantizer', bits=4, role='weight', delta=1e-3, fused=True),
        dict(type='EWGSQuantizer', bits=4, role='activation', fused=True),
    ),
    'daq': (
        dict(type='DAQQuantizer', bits=4, role='weight'),
        dict(type='DAQQuantizer', bits=4, role='activation'),
    ),
    'daq_fused': (
        dict(type='DAQQuantizer', bits=4, role='weight', fused=True),
        dict(type='DAQQuantizer', bits=4, role='activation', fused=True),
    ),
    'n2uq': (
        dict(type='N2UQWeightQuantizer', bits=4),
        dict(type='N2UQActQuantizer', bits=4),
    ),
    'n2uq_fused': (
        dict(type='N2UQWeightQuantizer', bits=4, fused=True),
        dict(type='N2UQActQuantizer', bits=4, fused=True),
    ),
    'ste': (
        dict(
            type='UniformSTEQuantizer',
            bits=4,
            observer='current',
            signed=True,
            per_channel=True,
        ),
        dict(type='UniformSTEQuantizer', bits=4, observer='ema'),
    ),
    'binary': (
        dict(type='ScaledBinaryWeightQuantizer', bits=1),
        dict(type='RSignQuantizer', bits=1),
    ),
}


def _tiny_qat_model(method):
    weight, act = QUANTIZERS[method]
    model = quantize_model(_tiny_net(), w=weight, a=act, keep_output_float=False)
    layers = [m for m in model.modules() if isinstance(m, QuantLayerMixin)]
    assert len(layers) == 2
    return model.train()


def _step(model, x, labels):
    out = model(x)
    torch.nn.functional.cross_entropy(out, labels).backward()
    return out


@pytest.mark.parametrize('method', list(QUANTIZERS))
def test_qat_model_compiles_to_one_graph_with_eager_values(method, deterministic):
    """After the eager initialization (first batch), the training forward and
    backward of each quantizer's QAT model compile with ``fullgraph=True``
    and give the eager output, parameter gradients and buffers (EMA ranges,
    batch-norm statistics)."""
    model = _tiny_qat_model(method)
    model(torch.randn(4, 1, 12, 12))  # initialization (eager)
    compiled_model = copy.deepcopy(model)
    x = torch.randn(4, 1, 12, 12)
    labels = torch.tensor([0, 1, 2, 0])
    out = _step(model, x, labels)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, backend='aot_eager', fullgraph=True)
    out_c = _step(compiled, x, labels)
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    params = dict(model.named_parameters())
    for name, param in compiled_model.named_parameters():
        assert param.grad is not None or params[name].grad is None, name
        if param.grad is not None:
            torch.testing.assert_close(
                param.grad, params[name].grad, rtol=1e-4, atol=1e-6, msg=name
            )
    buffers = dict(model.named_buffers())
    for name, buffer in compiled_model.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], msg=name)


# the fused kernels each method's compiled graph calls
FUSED_OPS = {
    'lsq_fused': ('lsq_forward', 'lsq_backward'),
    'ewgs_fused': ('ewgs_forward', 'ewgs_backward'),
    'daq_fused': ('daq_forward', 'daq_backward'),
    'n2uq_fused': (
        'n2uq_forward',
        'n2uq_backward',
        'n2uq_weight_forward',
        'n2uq_weight_backward',
    ),
}


@pytest.mark.parametrize('method', list(FUSED_OPS))
def test_compiled_graph_calls_the_fused_kernels(method, deterministic):
    """The compiled forward and backward graphs call the fused C++ kernels
    (custom operators with fake implementations), not a decomposition."""
    assert load_kernels() is not None, kernel_error()
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    targets = set()

    def record(graph, example_inputs):
        targets.update(str(node.target) for node in graph.graph.nodes)
        return make_boxed_func(graph)

    model = _tiny_qat_model(method)
    model(torch.randn(4, 1, 12, 12))  # initialization (eager)
    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler=record, bw_compiler=record)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    _step(compiled, torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0]))
    for op in FUSED_OPS[method]:
        assert f'mmcompress_kernels.{op}.default' in targets, op


def test_compiled_fused_ewgs_follows_a_changed_delta(deterministic):
    """The fused EWGS kernel takes ``delta`` as a tensor: after the Hessian
    update writes new deltas into the buffers, the compiled step (no
    recompilation: ``fullgraph`` with one frame) gives the eager gradients
    of the new delta, which differ from those of the old one."""
    assert load_kernels() is not None, kernel_error()
    model = _tiny_qat_model('ewgs_fused')
    model(torch.randn(4, 1, 12, 12))  # initialization (eager)
    compiled_model = copy.deepcopy(model)
    x = torch.randn(4, 1, 12, 12)
    labels = torch.tensor([0, 1, 2, 0])
    torch._dynamo.reset()
    counter = CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(compiled_model, backend=counter, fullgraph=True)
    _step(compiled, x, labels)
    grads = {}
    for delta in (0.0, 0.5):
        for net in (model, compiled_model):
            net.zero_grad()
            for module in net.modules():
                if isinstance(module, EWGSQuantizer):
                    module.delta.fill_(delta)
        _step(model, x, labels)
        _step(compiled, x, labels)
        params = dict(model.named_parameters())
        for name, param in compiled_model.named_parameters():
            torch.testing.assert_close(param.grad, params[name].grad, msg=name)
        grads[delta] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert counter.frame_count == 1
    assert any(
        not torch.equal(grads[0.0][name], grads[0.5][name]) for name in grads[0.0]
    )


def test_initialization_inside_compiled_call_warns(monkeypatch, deterministic):
    """A quantizer initialized inside a compiled call says that the graph
    breaks there (once per process) and gives the eager values."""
    monkeypatch.setattr(quantizer_base, '_TRACED_INIT_WARNED', [])
    model = _tiny_qat_model('lsq_fused')
    eager_model = copy.deepcopy(model)
    x = torch.randn(4, 1, 12, 12)
    torch._dynamo.reset()
    with pytest.warns(UserWarning, match='initialized from data inside a torch'):
        out = torch.compile(model, backend='aot_eager')(x)
    torch.testing.assert_close(out, eager_model(x))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        eager_model(x)  # no warning eagerly


def _ewgs_conv():
    weight, act = QUANTIZERS['ewgs']
    return QuantConv2d(2, 4, 3, weight_quantizer=weight, act_quantizer=act).train()


def test_output_scale_flag_follows_state_dict_load(deterministic):
    """A layer loaded from an initialized checkpoint compiles with
    ``fullgraph=True`` (no eager re-initialization of its output scale: the
    copy of the buffer is refreshed by ``load_state_dict``); an uninitialized
    one initializes eagerly inside the compiled call."""
    layer = _ewgs_conv()
    layer(torch.randn(2, 2, 6, 6))
    fresh = _ewgs_conv()
    assert not fresh._output_scale_initialized_flag
    fresh.load_state_dict(layer.state_dict())
    assert fresh._output_scale_initialized_flag
    scale = fresh.output_scale.detach().clone()
    torch._dynamo.reset()
    torch.compile(fresh, backend='aot_eager', fullgraph=True)(torch.randn(2, 2, 6, 6))
    assert torch.equal(fresh.output_scale.detach(), scale)
    uninitialized = _ewgs_conv()
    torch._dynamo.reset()
    torch.compile(uninitialized, backend='aot_eager')(torch.randn(2, 2, 6, 6))
    assert uninitialized.output_scale_initialized.item() == 1
    assert uninitialized._output_scale_initialized_flag


def test_eval_forward_of_qat_model_is_one_graph(deterministic):
    """Eval mode reads the layers' readiness from the flags too."""
    model = _tiny_qat_model('daq')
    model(torch.randn(4, 1, 12, 12))
    model.eval()
    x = torch.randn(2, 1, 12, 12)
    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    torch.testing.assert_close(compiled(x), eager)


def _stock_run(work_dir, compile_cfg):
    cfg = Config.fromfile(LSQ)
    cfg.load_from = None
    shorten_schedule(cfg, iters=2, log_interval=1, param_scheduler=[])
    shrink_data(cfg, batch_size=4, subset_size=8)
    if compile_cfg is not None:
        cfg.compile = compile_cfg
    work_dir.mkdir()
    cfg.work_dir = str(work_dir)
    path = osp.join(str(work_dir), 'lsq.py')
    cfg.dump(path)
    torch._dynamo.reset()
    graphs = counters['stats']['unique_graphs']
    run_tool_in_process(stock_tool('mmpretrain'), [path], 'mmpretrain')
    state = torch.load(osp.join(str(work_dir), 'iter_2.pth'), weights_only=False)
    return state['state_dict'], counters['stats']['unique_graphs'] - graphs


@pytest.mark.slow
def test_compiled_qat_model_trains_with_stock_tool(tmp_path):
    """mmpretrain's own tools/train.py with ``compile=...``: the first
    iteration runs eagerly (the quantizers initialize), the second runs the
    compiled train step (forward and backward graph; optimizer step eager,
    see mmcompress.utils.compile_compat). The weights after both steps are
    the eager run's."""
    eager, eager_graphs = _stock_run(tmp_path / 'eager', None)
    state, graphs = _stock_run(tmp_path / 'compiled', dict(backend='aot_eager'))
    assert eager_graphs == 0 and graphs >= 1
    assert state.keys() == eager.keys()
    assert state['backbone.layer1.0.conv1.act_quantizer.initialized'].item() == 1
    for key, value in eager.items():
        torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-6, msg=key)
