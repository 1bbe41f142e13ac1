"""Accuracy predictors: targets, cascade bagging, weak labels, encodings."""

import numpy as np
import pytest
from scipy import stats

from mmcompress.nas import NB201Space
from mmcompress.nas.predictor import (
    CascadeBaggingPredictor,
    MLPPredictor,
    RFPredictor,
    normal_scores,
)


def _toy(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, x @ np.array([3.0, -2.0, 1.0, 0.5, 0.0, 0.0]) + 0.1 * rng.normal(size=n)


def test_normal_scores_hand_values():
    z = stats.norm.ppf(5 / 6)
    assert np.allclose(normal_scores([10.0, 30.0, 20.0]), [-z, z, 0.0])
    # ties share the average rank
    assert np.allclose(normal_scores([1.0, 1.0]), [0.0, 0.0])


@pytest.mark.parametrize('cls', [CascadeBaggingPredictor, MLPPredictor, RFPredictor])
def test_predictors_rank_a_linear_target(cls):
    x, y = _toy(260)
    model = cls(seed=0).fit(x[:60], y[:60])
    tau = stats.kendalltau(model.predict(x[60:]), y[60:])[0]
    assert tau > (0.55 if cls is RFPredictor else 0.7)


def test_cascade_stages_and_weak_labels_change_the_model():
    x, y = _toy(160, seed=1)
    one = CascadeBaggingPredictor(num_stages=1, num_bags=3, seed=0).fit(x[:40], y[:40])
    two = CascadeBaggingPredictor(num_stages=2, num_bags=3, seed=0).fit(x[:40], y[:40])
    weak = CascadeBaggingPredictor(num_stages=2, num_bags=3, seed=0).fit(
        x[:40], y[:40], x_unlabelled=x[40:100]
    )
    assert len(one.stages) == 1 and len(two.stages) == 2
    # stage 2 sees the features plus the stage-1 prediction
    assert two.stages[1][0].coefs_[0].shape[0] == x.shape[1] + 1
    p1, p2, pw = (m.predict(x[100:]) for m in (one, two, weak))
    assert not np.allclose(p1, p2) and not np.allclose(p2, pw)
    # same seed, same model
    again = CascadeBaggingPredictor(num_stages=2, num_bags=3, seed=0).fit(
        x[:40], y[:40]
    )
    assert np.array_equal(again.predict(x[100:]), p2)


def test_cascade_errors():
    with pytest.raises(RuntimeError, match='predict called before fit'):
        CascadeBaggingPredictor().predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match='got 3 rows and 2 labels'):
        CascadeBaggingPredictor().fit(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r'noise_std must be >= 0'):
        CascadeBaggingPredictor(noise_std=-1)


def test_path_encoding():
    space = NB201Space()
    # 0->3 conv3x3 only: path (3,) on, every longer path goes through `none`
    enc = space.path_encode((0, 0, 0, 3, 0, 0))
    assert enc.shape == (180,) and enc.sum() == 1 and enc[3] == 1
    # all skip: each of the four paths has exactly one op sequence
    enc = space.path_encode((1,) * 6)
    assert enc.sum() == 4
    assert enc[5 + 1 * 5 + 1] == 1  # 0->1->3 = (skip, skip)
    assert enc[55 + 1 * 25 + 1 * 5 + 1] == 1  # 0->1->2->3
