"""Plain student checkpoints and loading downstream checkpoints."""

import os
import sys
from pathlib import Path

import torch
from mmengine.runner import Runner, load_checkpoint
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier, toy_batch  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402

PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=[0.5], std=[2.0])


class ToyDataset(Dataset):
    """16 random 1x8x8 images with 4 classes."""

    def __init__(self):
        self.inputs, samples = toy_batch(n=16, seed=3)
        self.labels = [s.gt_label for s in samples]

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        return dict(
            inputs=self.inputs[idx],
            data_samples=BaseDataElement(gt_label=self.labels[idx]),
        )


def _model_cfg(teacher_path):
    return dict(
        type='DistillModel',
        student=dict(type=ToyClassifier),
        teacher=dict(
            config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=teacher_path
        ),
        distill=dict(
            kd=dict(
                student='head.fc',
                teacher='head.fc',
                loss=dict(type='VanillaKDLoss', tau=2.0),
            ),
            hint=dict(
                student='backbone.stage2',
                teacher='backbone.stage2',
                loss=dict(type='FeatureMSELoss'),
            ),
        ),
        input_shape=(1, 8, 8),
        data_preprocessor=PREPROCESSOR,
    )


def _runner(work_dir, teacher_path, max_epochs, **kwargs):
    return Runner(
        model=_model_cfg(teacher_path),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
            batch_size=4,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
            logger=dict(type='LoggerHook', interval=1),
        ),
        default_scope='mmengine',
        **kwargs,
    )


def test_student_checkpoints_written_loadable_and_resumable(tmp_path):
    torch.manual_seed(1)
    teacher_path = str(tmp_path / 'teacher.pth')
    torch.save(
        {'state_dict': ToyClassifier(widths=(16, 32)).state_dict()}, teacher_path
    )
    work_dir = tmp_path / 'work'
    runner = _runner(work_dir, teacher_path, max_epochs=3)
    model = runner.train()
    names = sorted(os.listdir(work_dir))
    # max_keep_ckpts=2: epoch_1 and its student file were removed
    assert [n for n in names if n.endswith('.pth')] == [
        'epoch_2.pth',
        'epoch_2_student.pth',
        'epoch_3.pth',
        'epoch_3_student.pth',
    ]
    full = torch.load(work_dir / 'epoch_3.pth', weights_only=False)
    assert not any('teacher' in k for k in full['state_dict'])
    assert any(k.startswith('adapters.hint') for k in full['state_dict'])

    # a stock loader puts the student file into the plain student model
    plain = ToyClassifier(data_preprocessor=PREPROCESSOR)
    load_checkpoint(plain, str(work_dir / 'epoch_3_student.pth'), strict=True)
    plain.eval()
    model.eval()
    inputs, samples = toy_batch(seed=7)
    data = dict(inputs=list(inputs), data_samples=samples)
    expected = model.val_step(data)
    got = plain.val_step(data)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.pred_score, e.pred_score)

    # resume: a new epoch gets its student file, older ones are untouched
    mtime = os.path.getmtime(work_dir / 'epoch_2_student.pth')
    # mmengine's own run files resume under the safe (weights-only) policy
    resumed = _runner(work_dir, teacher_path, max_epochs=4, resume=True)
    resumed.train()
    assert os.path.getmtime(work_dir / 'epoch_2_student.pth') == mtime
    assert (work_dir / 'epoch_4_student.pth').exists()


def test_load_from_a_plain_downstream_checkpoint(tmp_path):
    torch.manual_seed(2)
    teacher_path = str(tmp_path / 'teacher.pth')
    torch.save(
        {'state_dict': ToyClassifier(widths=(16, 32)).state_dict()}, teacher_path
    )
    cfg = _model_cfg(teacher_path)
    cfg.pop('type')
    model = DistillModel(**cfg)
    pretrained = ToyClassifier()
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': pretrained.state_dict()}, path)
    # the Runner's load_from path (mmengine load_checkpoint, not strict)
    load_checkpoint(model, str(path))
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.student.state_dict()[key], value), key
    # prefixed keys (a DistillModel checkpoint) still load as they are
    state = model.state_dict()
    other = DistillModel(**cfg)
    other.load_state_dict(state, strict=True)
    for key, value in state.items():
        assert torch.equal(other.state_dict()[key], value), key


def _teacher_file(tmp_path):
    torch.manual_seed(1)
    path = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': ToyClassifier(widths=(16, 32)).state_dict()}, path)
    return path


def test_the_hook_is_added_once_and_state_dict_has_no_side_effect(tmp_path):
    from mmengine.logging import MessageHub

    from mmcompress.distill import StudentCheckpointHook

    teacher_path = _teacher_file(tmp_path)
    runner = _runner(tmp_path / 'auto', teacher_path, max_epochs=1)
    hooks = [h for h in runner.hooks if isinstance(h, StudentCheckpointHook)]
    assert len(hooks) == 1
    # it runs after the CheckpointHook (and EMAHook) of the same event
    assert runner.hooks[-1] is hooks[0]
    # configured by the user: kept, not added a second time
    runner = _runner(
        tmp_path / 'configured',
        teacher_path,
        max_epochs=1,
        custom_hooks=[dict(type='StudentCheckpointHook')],
    )
    assert sum(isinstance(h, StudentCheckpointHook) for h in runner.hooks) == 1
    # asking the model for its state writes nothing
    hub = MessageHub.get_current_instance()
    hub.update_info('last_ckpt', str(tmp_path / 'epoch_9.pth'))
    runner.model.state_dict()
    assert not (tmp_path / 'epoch_9_student.pth').exists()


def test_student_file_is_the_student_part_of_its_checkpoint(tmp_path):
    teacher_path = _teacher_file(tmp_path)
    work_dir = tmp_path / 'work'
    model = _runner(work_dir, teacher_path, max_epochs=1).train()
    full = torch.load(work_dir / 'epoch_1.pth', weights_only=False)
    plain = torch.load(work_dir / 'epoch_1_student.pth', weights_only=False)
    assert plain['meta'] == dict(student_of='epoch_1.pth')
    expected = model.student.state_dict()
    assert list(plain['state_dict']) == list(expected)
    for key, value in expected.items():
        assert torch.equal(plain['state_dict'][key], value), key
        assert torch.equal(full['state_dict']['student.' + key], value), key
    # module versions as student.state_dict() has them (BN loading uses them)
    assert plain['state_dict']._metadata == expected._metadata


def test_student_file_follows_ema_weights_of_the_checkpoint(tmp_path):
    """With EMAHook the checkpoint holds the averaged weights; its student
    file holds the same ones, not the raw training weights."""
    teacher_path = _teacher_file(tmp_path)
    work_dir = tmp_path / 'work'
    model = _runner(
        work_dir,
        teacher_path,
        max_epochs=1,
        custom_hooks=[dict(type='EMAHook', momentum=0.5)],
    ).train()
    full = torch.load(work_dir / 'epoch_1.pth', weights_only=False)
    plain = torch.load(work_dir / 'epoch_1_student.pth', weights_only=False)
    key = 'backbone.stage1.0.weight'
    assert torch.equal(plain['state_dict'][key], full['state_dict']['student.' + key])
    assert not torch.equal(plain['state_dict'][key], model.student.state_dict()[key])
