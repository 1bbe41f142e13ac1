"""DistillModel on tiny models (no downstream package needed)."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier, toy_batch  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402

KD = dict(
    student='head.fc', teacher='head.fc', loss=dict(type='VanillaKDLoss', tau=4.0)
)


@pytest.fixture
def teacher_ckpt(tmp_path):
    torch.manual_seed(1)
    teacher = ToyClassifier(widths=(16, 32))
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, path)
    return str(path), teacher


def _build(teacher_ckpt, distill=None, **kwargs):
    torch.manual_seed(0)
    return DistillModel(
        student=dict(type=ToyClassifier),
        teacher=dict(
            config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=teacher_ckpt[0]
        ),
        distill=distill or dict(kd=KD),
        input_shape=(1, 8, 8),
        **kwargs,
    )


def _train(model, steps=5, lr=0.1):
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9))
    )
    model.train()
    logs = []
    for step in range(steps):
        inputs, samples = toy_batch(seed=step)
        logs.append(model.train_step(dict(inputs=inputs, data_samples=samples), optim))
    return optim, logs


def test_teacher_frozen_hidden_and_unchanged_by_training(teacher_ckpt):
    model = _build(teacher_ckpt)
    teacher = model.teachers['teacher']
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optim, logs = _train(model)
    assert len(logs) == 5
    assert all(
        torch.isfinite(log['loss_distill_kd']) and log['loss_distill_kd'] > 0
        for log in logs
    )
    # never in the optimizer, never a parameter or state of the model
    teacher_ids = {id(p) for p in teacher.parameters()}
    optim_ids = {
        id(p) for group in optim.optimizer.param_groups for p in group['params']
    }
    assert not teacher_ids & optim_ids
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any('teacher' in k for k in model.state_dict())
    # frozen, eval mode kept through model.train(), bitwise unchanged
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    # and it equals the checkpoint it was loaded from
    for key, value in teacher_ckpt[1].state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key


def test_loss_values_match_an_independent_computation(teacher_ckpt):
    model = _build(
        teacher_ckpt,
        distill=dict(
            kd=KD,
            dkd=dict(
                student='head.fc',
                teacher='head.fc',
                loss=dict(type='DecoupledKDLoss', tau=2.0, beta=4.0),
            ),
        ),
        student_loss_weight=0.5,
    )
    inputs, samples = toy_batch()
    model.train()
    losses = model(inputs, samples, mode='loss')
    with torch.no_grad():
        logits_T = model.teachers['teacher'](inputs)
        logits_S = model.student(inputs)
    labels = torch.cat([s.gt_label for s in samples])
    expected_kd = (
        F.kl_div(
            F.log_softmax(logits_S / 4, 1),
            F.softmax(logits_T / 4, 1),
            reduction='batchmean',
        )
        * 16
    )
    torch.testing.assert_close(losses['loss_distill_kd'], expected_kd)
    torch.testing.assert_close(
        losses['loss_student'], 0.5 * F.cross_entropy(logits_S, labels)
    )
    dkd = model.distill_losses['dkd'](logits_S, logits_T, gt_labels=labels)
    torch.testing.assert_close(losses['loss_distill_dkd'], dkd)


def test_teacher_runs_only_the_recorded_part(teacher_ckpt):
    model = _build(
        teacher_ckpt,
        distill=dict(
            fpn=dict(
                student='backbone', teacher='backbone', loss=dict(type='FeatureMSELoss')
            )
        ),
    )
    teacher = model.teachers['teacher']
    calls = teacher.head.calls
    inputs, samples = toy_batch()
    losses = model(inputs, samples, mode='loss')
    assert teacher.head.calls == calls  # head never ran
    assert set(losses) == {'loss_student', 'loss_distill_fpn'}
    # the channel mismatch (8/16 vs 16/32) got automatic 1x1 conv adapters
    layers = model.adapters['fpn'].layers
    assert [m.conv.out_channels for m in layers] == [16, 32]


def test_predict_and_tensor_run_the_student_only(teacher_ckpt):
    model = _build(teacher_ckpt).eval()
    teacher = model.teachers['teacher']
    calls = teacher.head.calls
    inputs, samples = toy_batch()
    out = model(inputs, samples, mode='tensor')
    torch.testing.assert_close(out, model.student(inputs))
    preds = model.val_step(dict(inputs=inputs, data_samples=samples))
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in preds]), out.softmax(1)
    )
    assert teacher.head.calls == calls


def test_weight_schedule_warmup_and_stop(teacher_ckpt):
    model = _build(teacher_ckpt, schedule=dict(warmup_epochs=4, stop_epoch=6))
    inputs, samples = toy_batch()
    hub = MessageHub.get_current_instance()
    values = {}
    try:
        for epoch in (0, 1, 5):
            hub.update_info('epoch', epoch)
            values[epoch] = model(inputs, samples, mode='loss')
        torch.testing.assert_close(
            values[1]['loss_distill_kd'], values[0]['loss_distill_kd'] * 2
        )
        torch.testing.assert_close(
            values[5]['loss_distill_kd'], values[0]['loss_distill_kd'] * 4
        )
        hub.update_info('epoch', 6)
        calls = model.teachers['teacher'].head.calls
        stopped = model(inputs, samples, mode='loss')
        assert stopped['loss_distill_kd'].item() == 0
        assert model.teachers['teacher'].head.calls == calls  # not run
    finally:
        hub.update_info('epoch', 0)


def test_zero_loss_still_touches_trainable_distill_parameters(teacher_ckpt):
    model = _build(
        teacher_ckpt,
        distill=dict(
            hint=dict(
                student='backbone.stage2',
                teacher='backbone.stage2',
                loss=dict(type='FeatureMSELoss'),
                schedule=dict(stop_epoch=0),
            )
        ),
    )
    inputs, samples = toy_batch()
    loss = model(inputs, samples, mode='loss')['loss_distill_hint']
    loss.backward()
    grads = [p.grad for p in model.adapters['hint'].parameters()]
    assert all(g is not None and not g.any() for g in grads)


def test_clear_errors(teacher_ckpt, tmp_path):
    with pytest.raises(KeyError, match=r"'head.fc'"):
        _build(teacher_ckpt, distill=dict(kd=dict(KD, student='head.fcc')))
    with pytest.raises(ValueError, match='adapter=None'):
        _build(
            teacher_ckpt,
            distill=dict(
                hint=dict(
                    student='backbone.stage2',
                    teacher='backbone.stage2',
                    adapter=None,
                    loss=dict(type='FeatureMSELoss'),
                )
            ),
        )
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _build((str(tmp_path / 'missing.pth'), None))
    wrong = tmp_path / 'wrong.pth'
    state = teacher_ckpt[1].state_dict()
    state['extra.weight'] = torch.zeros(1)
    del state['head.fc.bias']
    torch.save({'state_dict': state}, wrong)
    with pytest.raises(RuntimeError, match=r'missing keys: head.fc.bias.*extra.weight'):
        _build((str(wrong), None))
    with pytest.raises(KeyError, match='valid keys'):
        _build(teacher_ckpt, distill=dict(kd=dict(KD, weight=2)))


def test_teacher_with_its_own_preprocessing(teacher_ckpt):
    """The teacher normalises with its own mean/std, the student with its."""
    torch.manual_seed(0)
    model = DistillModel(
        student=dict(
            type=ToyClassifier,
            data_preprocessor=dict(type='ImgDataPreprocessor', mean=[0.0], std=[1.0]),
        ),
        teacher=dict(
            config=dict(
                type=ToyClassifier,
                widths=(16, 32),
                data_preprocessor=dict(
                    type='ImgDataPreprocessor', mean=[10.0], std=[2.0]
                ),
            ),
            checkpoint=teacher_ckpt[0],
        ),
        distill=dict(
            img=dict(
                student=dict(module='backbone', io='input'),
                teacher=dict(module='backbone', io='input'),
                loss=dict(type='FeatureMSELoss'),
            )
        ),
        input_shape=(1, 8, 8),
    )
    raw = [torch.rand(1, 8, 8) * 255 for _ in range(2)]
    data = model.data_preprocessor(dict(inputs=raw), True)
    torch.testing.assert_close(data['inputs'], torch.stack(raw))
    torch.testing.assert_close(
        data['teacher_inputs']['teacher'], (torch.stack(raw) - 10) / 2
    )
    # in evaluation only the student's preprocessing runs
    assert 'teacher_inputs' not in model.data_preprocessor(dict(inputs=raw), False)
    # equal preprocessor configs: the teacher shares the student's inputs
    assert len(_build(teacher_ckpt).data_preprocessor.teachers) == 0


def test_bf16_autocast_and_gradient_checkpointing_in_the_student(teacher_ckpt):
    torch.manual_seed(0)
    model = DistillModel(
        student=dict(type=ToyClassifier, with_cp=True),
        teacher=dict(
            config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=teacher_ckpt[0]
        ),
        distill=dict(
            hint=dict(
                student='backbone.stage2',
                teacher='backbone.stage2',
                loss=dict(type='FeatureMSELoss'),
            )
        ),
        input_shape=(1, 8, 8),
    ).train()
    inputs, samples = toy_batch()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(inputs, samples, mode='loss')
    assert losses['loss_distill_hint'].dtype == torch.float32
    losses['loss_distill_hint'].backward()
    # the distillation gradient reaches the checkpointed stage
    grad = model.student.backbone.stage2[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.any()
    # and the model still trains through mmengine's train_step
    _, logs = _train(model, steps=2)
    assert len(logs) == 2 and 'loss_distill_hint' in logs[0]
    assert all(torch.isfinite(v) for log in logs for v in log.values())


def test_teacher_checkpoint_url_from_the_hub_cache(teacher_ckpt, tmp_path):
    url = 'https://download.example.org/models/toy_teacher-1234.pth'
    old_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        with pytest.raises(FileNotFoundError, match='torch hub cache'):
            _build((url, None))
        cached = tmp_path / 'hub' / 'checkpoints' / 'toy_teacher-1234.pth'
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(Path(teacher_ckpt[0]).read_bytes())
        model = _build((url, None))
    finally:
        torch.hub.set_dir(old_dir)
    for key, value in teacher_ckpt[1].state_dict().items():
        assert torch.equal(model.teachers['teacher'].state_dict()[key], value)


def test_several_teachers(teacher_ckpt):
    teacher = dict(
        config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=teacher_ckpt[0]
    )
    torch.manual_seed(0)
    model = DistillModel(
        student=dict(type=ToyClassifier),
        teachers=dict(logits=teacher, feats=teacher),
        distill=dict(
            kd=dict(KD, teacher_name='logits'),
            hint=dict(
                student='backbone.stage1',
                teacher='backbone.stage1',
                teacher_name='feats',
                loss=dict(type='FeatureMSELoss'),
            ),
        ),
        input_shape=(1, 8, 8),
    )
    assert set(model.teachers) == {'logits', 'feats'}
    calls = model.teachers['feats'].head.calls
    inputs, samples = toy_batch()
    losses = model(inputs, samples, mode='loss')
    assert {'loss_distill_kd', 'loss_distill_hint'} <= set(losses)
    # the feature teacher stopped after stage 1, the logit teacher did not
    assert model.teachers['feats'].head.calls == calls
    with pytest.raises(ValueError, match='teacher_name=..., one of'):
        DistillModel(
            student=dict(type=ToyClassifier),
            teachers=dict(a=teacher, b=teacher),
            distill=dict(kd=KD),
            input_shape=(1, 8, 8),
        )


def test_reduced_precision_teacher(teacher_ckpt):
    """``precision='bf16'``: the teacher's forward runs under bf16 autocast
    (recorded logits are bf16), the loss is computed in float32 from them and
    stays close to the fp32 teacher's; the student is untouched."""

    def build(precision):
        torch.manual_seed(0)
        return DistillModel(
            student=dict(type=ToyClassifier),
            teacher=dict(
                config=dict(type=ToyClassifier, widths=(16, 32)),
                checkpoint=teacher_ckpt[0],
                precision=precision,
            ),
            distill=dict(kd=KD),
            input_shape=(1, 8, 8),
        )

    model_fp32 = _build(teacher_ckpt)
    model_bf16 = build('bf16')
    model_bf16.student.load_state_dict(model_fp32.student.state_dict())
    inputs, samples = toy_batch()
    seen = {}
    recorder = model_bf16._teacher_recorders['teacher']
    original_get = recorder.get

    def spy(name):
        seen[name] = original_get(name)
        return seen[name]

    recorder.get = spy
    loss_bf16 = model_bf16(inputs, samples, mode='loss')['loss_distill_kd']
    loss_fp32 = model_fp32(inputs, samples, mode='loss')['loss_distill_kd']
    assert seen['kd'][0].dtype == torch.bfloat16
    assert loss_bf16.dtype == torch.float32
    # bf16 keeps ~3 significant digits of the teacher logits
    torch.testing.assert_close(loss_bf16, loss_fp32, rtol=0.05, atol=1e-3)
    assert not torch.equal(loss_bf16, loss_fp32)
    with pytest.raises(ValueError, match="precision='int8' is invalid"):
        build('int8')
