"""Full-model loads fail when they leave weights unloaded; partial loads don't."""

import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel, BaseModule
from mmengine.model.weight_init import PretrainedInit
from mmengine.runner import Runner, load_checkpoint, save_checkpoint
from torch import nn

import mmcompress  # noqa: F401  (installs the policy)
from mmcompress.utils.load_check import (
    UnloadedWeightsError,
    allowed_unloaded_weights,
    declared_optional,
)


class Toy(BaseModel):
    """conv + BN backbone, linear head."""

    def __init__(self, width=4, classes=3):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, width, 3), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.head(self.backbone(inputs).mean((2, 3)))


class Quantizerish(nn.Module):
    """State that a float checkpoint does not have (as a quantizer's)."""

    checkpoint_optional_state = True

    def __init__(self):
        super().__init__()
        self.step = nn.Parameter(torch.ones(1))
        self.register_buffer('initialized', torch.zeros((), dtype=torch.uint8))


class ToyWithOptional(Toy):
    """A quantized-like layer: float weight plus an optional scale and a
    quantizer child."""

    checkpoint_optional_state = ('extra_scale',)

    def __init__(self):
        super().__init__()
        self.extra_scale = nn.Parameter(torch.ones(1))
        self.head_quantizer = Quantizerish()


def _save(model_or_state, path, prefix=''):
    state = (
        model_or_state.state_dict()
        if isinstance(model_or_state, nn.Module)
        else model_or_state
    )
    save_checkpoint(
        {'meta': {}, 'state_dict': {prefix + k: v for k, v in state.items()}}, str(path)
    )
    return str(path)


def _same(a: nn.Module, b: nn.Module, keys):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in keys)


def test_matching_checkpoint_loads(tmp_path):
    src = Toy()
    dst = Toy()
    load_checkpoint(dst, _save(src, tmp_path / 'ok.pth'))
    assert _same(src, dst, src.state_dict())


def test_kd_checkpoint_names_the_prefix_and_the_student_file(tmp_path):
    path = _save(Toy(), tmp_path / 'epoch_3.pth', prefix='student.')
    with pytest.raises(UnloadedWeightsError) as err:
        load_checkpoint(Toy(), path)
    msg = str(err.value)
    assert f'Checkpoint {path} does not fit Toy: 8 of 8 tensors' in msg
    assert 'missing from the checkpoint: backbone.*, head.*' in msg
    assert 'under `student.`' in msg and 'epoch_3_student.pth' in msg
    assert '(it exists)' not in msg
    _save(Toy(), tmp_path / 'epoch_3_student.pth')
    with pytest.raises(
        UnloadedWeightsError, match=r'epoch_3_student\.pth \(it exists\)'
    ):
        load_checkpoint(Toy(), path)


def test_wrapped_and_sub_model_checkpoints_get_their_hint(tmp_path):
    wrapped = _save(Toy(), tmp_path / 'wrapped.pth', prefix='model.')
    with pytest.raises(
        UnloadedWeightsError, match=r'under the prefix `model\.`.*revise_keys'
    ):
        load_checkpoint(Toy(), wrapped)
    backbone_only = _save(Toy().backbone, tmp_path / 'backbone.pth')
    with pytest.raises(UnloadedWeightsError) as err:
        load_checkpoint(Toy(), backbone_only)
    msg = str(err.value)
    assert 'missing from the checkpoint: backbone.*, head.*' in msg
    assert "backbone=dict(init_cfg=dict(type='Pretrained'" in msg


def test_other_architecture_shapes_fail(tmp_path):
    path = _save(Toy(width=8), tmp_path / 'wide.pth')
    with pytest.raises(UnloadedWeightsError) as err:
        load_checkpoint(Toy(width=4), path)
    msg = str(err.value)
    assert (
        'shape differs: head.weight (checkpoint (3, 8), model (3, 4)), '
        'backbone.0.weight (checkpoint (8, 1, 3, 3), model (4, 1, 3, 3))'
    ) in msg
    assert 'another architecture' in msg


def test_class_count_change_warns_and_loads_the_rest(tmp_path, capsys):
    src = Toy(classes=5)
    dst = Toy(classes=3)
    head_before = dst.head.weight.detach().clone()
    MMLogger.get_instance('test_load_check_warn')
    load_checkpoint(dst, _save(src, tmp_path / 'c5.pth'))
    text = capsys.readouterr().out
    assert (
        '2 tensors of Toy keep their initial values: their first dimension '
        'differs from the checkpoint'
    ) in text
    assert 'head.weight (checkpoint (5, 4), model (3, 4))' in text
    assert _same(src, dst, [k for k in src.state_dict() if k.startswith('backbone')])
    assert torch.equal(dst.head.weight, head_before)


def test_declared_optional_state_may_be_missing(tmp_path, capsys):
    model = ToyWithOptional()
    assert declared_optional(model, 'extra_scale')
    assert declared_optional(model, 'head_quantizer.step')
    assert not declared_optional(model, 'head.weight')
    float_ckpt = _save(Toy(), tmp_path / 'float.pth')
    MMLogger.get_instance('test_load_check_optional')
    load_checkpoint(model, float_ckpt)
    assert (
        '3 tensors of ToyWithOptional that it declares optional'
        in capsys.readouterr().out
    )
    # the float weights must still be there
    partial = {k: v for k, v in Toy().state_dict().items() if k != 'head.bias'}
    with pytest.raises(
        UnloadedWeightsError, match='missing from the checkpoint: head.bias'
    ):
        load_checkpoint(model, _save(partial, tmp_path / 'partial.pth'))


def test_module_pre_hook_that_resizes_is_not_a_mismatch(tmp_path):
    """A module adapting a checkpoint tensor on load (as ViT's position
    embedding) loads it: not reported as a shape mismatch."""

    class Resizing(Toy):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(1, 4))
            self.register_load_state_dict_pre_hook(self._resize)

        @staticmethod
        def _resize(module, state_dict, prefix, *args):
            key = prefix + 'pos'
            if key in state_dict and state_dict[key].shape != (1, 4):
                state_dict[key] = state_dict[key][:, :4]

    src = Resizing()
    state = dict(src.state_dict(), pos=torch.ones(1, 6))
    dst = Resizing()
    load_checkpoint(dst, _save(state, tmp_path / 'pos.pth'))
    assert torch.equal(dst.pos, torch.ones(1, 4))


def test_partial_loads_into_sub_modules_are_not_checked(tmp_path):
    """``init_cfg=dict(type='Pretrained', ...)`` loads into a backbone: with a
    prefix (mmpretrain fine-tuning) and without (mmdet backbone from a
    classifier checkpoint whose keys cover only part of it)."""
    full = _save(Toy(), tmp_path / 'full.pth')

    class Backbone(BaseModule):
        def __init__(self):
            super().__init__()
            self.add_module('0', nn.Conv2d(1, 4, 3))
            self.add_module('1', nn.BatchNorm2d(4))
            self.extra = nn.Conv2d(4, 4, 1)  # not in any classifier checkpoint

    prefixed = Backbone()
    PretrainedInit(checkpoint=full, prefix='backbone.')(prefixed)
    assert torch.equal(
        prefixed._modules['0'].weight,
        torch.load(full)['state_dict']['backbone.0.weight'],
    )
    classifier = _save(Toy().backbone, tmp_path / 'classifier.pth')
    PretrainedInit(checkpoint=classifier)(Backbone())


def test_opt_out_by_context_and_by_runner_config(tmp_path):
    partial = {k: v for k, v in Toy().state_dict().items() if not k.startswith('head')}
    path = _save(partial, tmp_path / 'partial.pth')
    with allowed_unloaded_weights(['head']):
        load_checkpoint(Toy(), path)
    with allowed_unloaded_weights(['backbone']):
        with pytest.raises(
            UnloadedWeightsError, match=r"allow_unloaded_weights = \['head'\]"
        ):
            load_checkpoint(Toy(), path)
    runner = Runner(
        model=Toy(), work_dir=str(tmp_path / 'w'), cfg=dict(allow_unloaded_weights=True)
    )
    runner.load_checkpoint(path)


def test_runner_load_from_and_resume_check_the_model(tmp_path):
    kd = _save(Toy(), tmp_path / 'kd.pth', prefix='student.')
    for resume in (False, True):
        runner = Runner(
            model=Toy(),
            work_dir=str(tmp_path / f'w{resume}'),
            load_from=kd,
            resume=resume,
        )
        with pytest.raises(UnloadedWeightsError, match='under `student.`'):
            runner.load_or_resume()
    assert osp.isfile(kd)


def _config_model_checkpoint(config, path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmcompress.registry import MODELS

    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    return model, _save(model, path)


def test_real_configs_start_from_float_and_plain_student_checkpoints(tmp_path):
    """QAT ``load_from`` a float checkpoint (quantizer state missing) and
    FitNets ``load_from`` a plain student checkpoint (adapter missing) load,
    with the float weights in place."""
    from mmengine.config import Config

    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    configs = osp.join(repo, 'configs')
    student, student_ckpt = _config_model_checkpoint(
        osp.join(configs, 'baselines/mmpretrain/fmnist_student.py'),
        tmp_path / 'student.pth',
    )
    _, teacher_ckpt = _config_model_checkpoint(
        osp.join(configs, 'baselines/mmpretrain/fmnist_teacher.py'),
        tmp_path / 'teacher.pth',
    )
    expected = student.state_dict()['backbone.layer1.0.conv1.weight']
    for name, config, prefix in (
        ('qat', 'quant/mmpretrain/lsq_w4a4_fmnist.py', ''),
        ('fitnets', 'distill/mmpretrain/fitnets_fmnist.py', 'student.'),
    ):
        cfg = Config.fromfile(osp.join(configs, config))
        cfg.work_dir = str(tmp_path / name)
        cfg.load_from = student_ckpt
        if name == 'fitnets':
            cfg.model.teacher.checkpoint = teacher_ckpt
        runner = Runner.from_cfg(cfg)
        runner.load_or_resume()
        state = runner.model.state_dict()
        assert torch.equal(
            state[prefix + 'backbone.layer1.0.conv1.weight'], expected
        ), name
        if name == 'fitnets':
            assert any(k.startswith('adapters.') for k in state)
