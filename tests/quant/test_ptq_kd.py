"""Limited-data two-stage KD (Yuan et al.): the stage-2 loss on hand values, the
k-images-per-class draw (stage 2 on real images: test_ptq_reconstruct.py)."""

import math

import pytest
import torch

from mmcompress.quant.ptq import images_per_class, kd_loss, limited_loader


def test_kl_loss_against_hand_values():
    """Teacher logits (ln 3, 0) -> p = (3/4, 1/4); student (0, 0) -> (1/2, 1/2).
    KL = 3/4 ln(3/2) + 1/4 ln(1/2) at T = 1; at T = 2 the teacher gives
    (sqrt 3, 1) / (sqrt 3 + 1) and the loss is T^2 times that KL."""
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    hand_t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kd_loss(student, teacher, 'kl', 1.0).item() == pytest.approx(
        hand_t1, rel=1e-5
    )
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    hand_t2 = 4 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert kd_loss(student, teacher, 'kl', 2.0).item() == pytest.approx(
        hand_t2, rel=1e-5
    )
    # batch mean: a second, identical row leaves it unchanged
    assert kd_loss(
        student.repeat(2, 1), teacher.repeat(2, 1), 'kl', 1.0
    ).item() == pytest.approx(hand_t1, rel=1e-5)
    assert kd_loss(teacher, teacher, 'kl', 3.0).item() == pytest.approx(0, abs=1e-5)


def test_mse_loss_sums_over_the_output_tensors():
    """(mean of (1, 3)^2 = 5) + (mean of 2^2 over 4 = 4) = 9 for a nested output."""
    student = (torch.tensor([1.0, 3.0]), dict(a=[torch.full((2, 2), 2.0)]))
    teacher = (torch.zeros(2), dict(a=[torch.zeros(2, 2)]))
    assert kd_loss(student, teacher, 'mse').item() == pytest.approx(9.0)


class Labelled(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b', 'c'))

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return idx

    def get_cat_ids(self, idx):
        return [self.labels[idx]]


def test_images_per_class_draws_k_of_every_class():
    labels = [0, 1, 0, 1, 2, 0, 2, 1, 0, 2, 1, 0]
    dataset = Labelled(labels)
    chosen = images_per_class(dataset, 2, seed=0)
    assert [labels[i] for i in chosen] == [0, 0, 1, 1, 2, 2]
    assert len(set(chosen)) == 6
    assert images_per_class(dataset, 2, seed=0) == chosen
    draws = {tuple(images_per_class(dataset, 2, seed=s)) for s in range(5)}
    assert len(draws) > 1
    # k = all images of the smallest class: every image of class 2
    assert sorted(i for i in images_per_class(dataset, 3) if labels[i] == 2) == [
        4,
        6,
        9,
    ]
    loader = limited_loader(
        torch.utils.data.DataLoader(dataset, batch_size=4), 2, seed=0
    )
    assert [int(i) for b in loader for i in b] == chosen
