"""torch.compile of DistillModel's training loss: teacher pass (no grad, cut
short after its last recorded value), student pass and distillation terms
trace as one graph and give the eager losses."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier, toy_batch  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402

# logits (the teacher runs to its head) and a feature that the in-place ReLU
# modifies after recording (cloned, see the dry run)
ENTRIES = dict(
    kd=dict(
        student='head.fc', teacher='head.fc', loss=dict(type='VanillaKDLoss', tau=4.0)
    ),
    at=dict(
        student='backbone.stage2', teacher='backbone.stage2', loss=dict(type='ATLoss')
    ),
)


def _build(teacher_path, distill):
    torch.manual_seed(0)
    return DistillModel(
        student=dict(type=ToyClassifier),
        teacher=dict(
            config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=teacher_path
        ),
        distill=distill,
        input_shape=(1, 8, 8),
    ).train()


def _train(model, loss_fn, steps=3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(steps):
        inputs, samples = toy_batch(seed=step)
        terms = loss_fn(inputs, samples)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append([t.item() for t in terms.values()])
    return losses


def test_compiled_distill_loss_is_one_graph_with_eager_values(tmp_path, deterministic):
    """``fullgraph=True``: no graph break anywhere in the loss (the recorders
    are traced, the teacher's forward ends with an exception caught inside the
    graph); three SGD steps give the eager loss terms and student weights."""
    torch.manual_seed(1)
    path = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': ToyClassifier(widths=(16, 32)).state_dict()}, path)
    eager_model = _build(path, ENTRIES)
    eager = _train(eager_model, lambda x, s: eager_model(x, s, mode='loss'), steps=3)
    model = _build(path, ENTRIES)
    torch._dynamo.reset()
    compiled_loss = torch.compile(
        lambda x, s: model(x, s, mode='loss'), backend='aot_eager', fullgraph=True
    )
    compiled = _train(model, compiled_loss, steps=3)
    assert len(compiled[0]) == 3  # student and two distillation terms
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    for (name, param), ref in zip(
        model.student.named_parameters(), eager_model.student.parameters()
    ):
        torch.testing.assert_close(param, ref, rtol=1e-5, atol=1e-6, msg=name)
