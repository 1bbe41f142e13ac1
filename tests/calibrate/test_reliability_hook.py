"""ReliabilityDiagramHook in real mmengine runs: epoch-based, iteration-based
and test-only loops name the diagrams by the step they were drawn at."""

import os
import uuid

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmcompress.calibrate  # noqa: F401  (registers the components)
from mmcompress.calibrate import ReliabilityDiagramHook


class ToyData(Dataset):
    def __init__(self, size=12):
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(size, 4, generator=generator)
        self.labels = torch.arange(size) % 3

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], labels=self.labels[index])


class ToyClassifier(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return [
            dict(pred_score=p, gt_label=y.view(1))
            for p, y in zip(logits.softmax(dim=1), labels)
        ]


def loader():
    return dict(
        dataset=ToyData(),
        batch_size=4,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
    )


def make_runner(work_dir, train_cfg=None, evaluator='ClsCalibrationMetric', **hook):
    training = train_cfg is not None
    return Runner(
        model=ToyClassifier(),
        work_dir=str(work_dir),
        # a unique name: runners built in the same second would otherwise
        # share mmengine's visualizer instance (named by the timestamp)
        experiment_name=f'reliability_{uuid.uuid4().hex}',
        train_dataloader=loader() if training else None,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)) if training else None,
        train_cfg=train_cfg,
        val_dataloader=loader() if training else None,
        val_evaluator=dict(type=evaluator) if training else None,
        val_cfg=dict() if training else None,
        test_dataloader=None if training else loader(),
        test_evaluator=None if training else dict(type=evaluator),
        test_cfg=None if training else dict(),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='ReliabilityDiagramHook', **hook)],
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
    )


def pngs(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith('.png'))


def vis_pngs(work_dir):
    found = []
    for root, _, files in os.walk(work_dir):
        if root.endswith(os.path.join('vis_data', 'vis_image')):
            found += [name for name in files if name.endswith('.png')]
    return sorted(found)


@pytest.mark.parametrize(
    'train_cfg, steps',
    [
        (dict(by_epoch=True, max_epochs=2, val_interval=1), [1, 2]),
        (dict(by_epoch=True, max_epochs=1, val_interval=1), [1]),
        (dict(by_epoch=False, max_iters=6, val_interval=3), [3, 6]),
    ],
)
def test_diagrams_named_by_completed_epochs_or_iterations(tmp_path, train_cfg, steps):
    make_runner(tmp_path / 'run', train_cfg, out_dir=str(tmp_path / 'extra')).train()
    expected = [f'calibration_reliability_val_{s}.png' for s in steps]
    assert pngs(tmp_path / 'extra') == expected
    assert vis_pngs(tmp_path / 'run') == expected


def test_test_only_run_draws_at_step_zero(tmp_path):
    make_runner(tmp_path / 'run', out_dir=str(tmp_path / 'extra')).test()
    assert pngs(tmp_path / 'extra') == ['calibration_reliability_test_0.png']


def test_phases_select_where_to_draw(tmp_path):
    make_runner(
        tmp_path / 'run', phases=('val',), out_dir=str(tmp_path / 'extra')
    ).test()
    assert not (tmp_path / 'extra').exists()
    with pytest.raises(
        ValueError,
        match=r"phases must be among \('val', "
        r"'test'\), got \['train'\]",
    ):
        ReliabilityDiagramHook(phases=('train',))
