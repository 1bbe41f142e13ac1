"""Tiny mmengine models for the distillation tests (no downstream package),
and a config tree with relative student/teacher paths (needs mmpretrain)."""

import os.path as osp

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn
from torch.utils.checkpoint import checkpoint


class ToyBackbone(nn.Module):
    """Two conv stages; returns a tuple of both stage outputs.

    ``with_cp`` runs stage 2 under (non-reentrant) gradient checkpointing.
    """

    def __init__(self, in_channels=1, widths=(8, 16), with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1),
            nn.BatchNorm2d(widths[1]),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        x1 = self.stage1(x)
        if self.with_cp and x1.requires_grad:
            x2 = checkpoint(self.stage2, x1, use_reentrant=False)
        else:
            x2 = self.stage2(x1)
        return x1, x2


class ToyHead(nn.Module):
    def __init__(self, in_channels=16, num_classes=4):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)
        self.calls = 0

    def pre_logits(self, feats):
        return feats[-1].mean((2, 3))

    def forward(self, feats):
        self.calls += 1
        return self.fc(self.pre_logits(feats))


class ToyClassifier(BaseModel):
    """A classifier with mmpretrain's forward interface."""

    def __init__(
        self,
        in_channels=1,
        widths=(8, 16),
        num_classes=4,
        with_cp=False,
        data_preprocessor=None,
        init_cfg=None,
    ):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = ToyBackbone(in_channels, widths, with_cp)
        self.head = ToyHead(widths[-1], num_classes)

    def extract_feat(self, inputs):
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.head(self.extract_feat(inputs))
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            labels = torch.cat([s.gt_label for s in data_samples])
            return dict(loss=F.cross_entropy(logits, labels))
        return [BaseDataElement(pred_score=score) for score in logits.softmax(1)]


def toy_batch(n=4, in_channels=1, size=8, num_classes=4, seed=0):
    """Random images and data samples with ``gt_label``."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, in_channels, size, size, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    samples = [BaseDataElement(gt_label=labels[i : i + 1]) for i in range(n)]
    return inputs, samples


REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDENT_BASE = osp.join(
    REPO, 'configs', '_base_', 'models', 'fmnist_resnet18-w8_student.py'
)
KD_CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)
work_dir = {work_dir!r}
model = dict(
    type='DistillModel',
    student=dict(config='./models/student.py'),
    teacher=dict(config='teacher.py', checkpoint=None),
    input_shape=(1, 28, 28),
    distill=dict(kd=dict(student='head.fc', teacher='head.fc',
                         loss=dict(type='VanillaKDLoss', tau=4.0))))
"""


def write_config_tree(root) -> str:
    """Write ``configs/kd.py`` (a DistillModel whose student and teacher
    configs are relative paths: ``./models/student.py``, ``teacher.py``) under
    ``root``; the models are mmpretrain's (Fashion-MNIST ResNet student).

    Returns:
        str: The path of ``kd.py``.
    """
    folder = root / 'configs'
    (folder / 'models').mkdir(parents=True)
    base = f"_base_ = [{STUDENT_BASE!r}]\ndefault_scope = 'mmpretrain'\n"
    (folder / 'models' / 'student.py').write_text(base)
    (folder / 'teacher.py').write_text(
        base + 'model = dict(head=dict(num_classes=10))\n'
    )
    (folder / 'kd.py').write_text(KD_CONFIG.format(work_dir=str(root / 'work')))
    return str(folder / 'kd.py')
