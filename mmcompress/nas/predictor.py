"""Few-sample accuracy predictors: cascade bagging with feature-noise augmentation
and weak-label calibration, and the MLP / random-forest baselines.

:class:`CascadeBaggingPredictor` is this package's reading of the CVPR 2021
Lightweight NAS challenge (track 2) recipe; the published description names three
parts and no official code is available here, so each part is implemented as:

* **feature-noise augmentation**: every bag trains on its bootstrap sample plus
  ``num_noisy`` copies with Gaussian noise (``noise_std``) added to the features;
* **cascade bagging**: stage ``s`` is a bag of ``num_bags`` small MLPs whose input is
  the architecture features plus the previous stage's prediction (out-of-bag for the
  training archs, so the next stage learns to correct, not to copy);
* **weak-label calibration**: unlabelled architectures (``x_unlabelled``) get the
  first stage's prediction, linearly calibrated on the out-of-bag predictions of the
  labelled ones, as weak targets with weight ``weak_weight`` in the later stages.

All predictors regress the normal scores of the accuracy ranks
(``Phi^-1((rank - 0.5) / k)``), so the few very poor architectures (about 10 %
accuracy, disconnected cells) do not dominate a squared loss; predictions are
therefore ranking scores (higher = better), not accuracies.
"""

from typing import List, Optional

import numpy as np
from scipy import stats
from sklearn.ensemble import RandomForestRegressor
from sklearn.neural_network import MLPRegressor

from mmcompress.utils.checks import check_number


def normal_scores(y) -> np.ndarray:
    """Normal scores of the ranks of ``y`` (ties share their average rank)."""
    y = np.asarray(y, dtype=np.float64)
    return stats.norm.ppf((stats.rankdata(y) - 0.5) / len(y))


def _mlp(seed: int, hidden=(64, 64), max_iter: int = 500) -> MLPRegressor:
    return MLPRegressor(
        hidden_layer_sizes=hidden,
        alpha=1e-3,
        learning_rate_init=3e-3,
        max_iter=max_iter,
        random_state=seed,
    )


class CascadeBaggingPredictor:
    """Cascade of bagged MLP ensembles (see the module docstring).

    Args:
        num_bags (int): Models per stage. Defaults to 5.
        num_stages (int): Cascade depth. Defaults to 2.
        noise_std (float): Feature-noise standard deviation. Defaults to 0.05.
        num_noisy (int): Noisy copies per bootstrap sample. Defaults to 1.
        weak_weight (float): Sample weight of weak labels. Defaults to 0.2.
        seed (int): Random seed. Defaults to 0.
    """

    def __init__(
        self,
        num_bags: int = 5,
        num_stages: int = 2,
        noise_std: float = 0.05,
        num_noisy: int = 1,
        weak_weight: float = 0.2,
        seed: int = 0,
    ):
        owner = 'CascadeBaggingPredictor'
        self.num_bags = int(check_number('num_bags', num_bags, 1, owner=owner))
        self.num_stages = int(check_number('num_stages', num_stages, 1, owner=owner))
        self.noise_std = check_number('noise_std', noise_std, 0, owner=owner)
        self.num_noisy = int(check_number('num_noisy', num_noisy, 0, owner=owner))
        self.weak_weight = check_number('weak_weight', weak_weight, 0, 1, owner=owner)
        self.seed = seed
        self.stages: List[List[MLPRegressor]] = []

    def _fit_bag(self, x, y, w, rng, n_labelled):
        models, oob_sum, oob_cnt = [], np.zeros(n_labelled), np.zeros(n_labelled)
        for _ in range(self.num_bags):
            idx = rng.integers(0, len(x), len(x))
            xs = [x[idx]] + [
                x[idx] + rng.normal(0, self.noise_std, x[idx].shape)
                for _ in range(self.num_noisy)
            ]
            m = _mlp(int(rng.integers(2**31)))
            m.fit(
                np.concatenate(xs), np.tile(y[idx], len(xs)), np.tile(w[idx], len(xs))
            )
            models.append(m)
            oob = np.setdiff1d(np.arange(n_labelled), idx)
            if len(oob):
                oob_sum[oob] += m.predict(x[oob])
                oob_cnt[oob] += 1
        full = np.mean([m.predict(x[:n_labelled]) for m in models], axis=0)
        oob_pred = np.where(oob_cnt > 0, oob_sum / np.maximum(oob_cnt, 1), full)
        return models, oob_pred

    def fit(self, x, y, x_unlabelled: Optional[np.ndarray] = None):
        """Train on labelled ``(x, y)``; ``x_unlabelled`` adds weak labels."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if len(x) != len(y) or len(x) < 2:
            raise ValueError(
                f'CascadeBaggingPredictor.fit needs >= 2 labelled archs and as many '
                f'labels as feature rows, got {len(x)} rows and {len(y)} labels'
            )
        rng = np.random.default_rng(self.seed)
        t = normal_scores(y)
        n = len(x)
        xs, ts, ws = x, t, np.ones(n)
        prev_l = prev_u = None
        self.stages = []
        for s in range(self.num_stages):
            if s > 0:
                xs = np.column_stack([x, prev_l])
                if x_unlabelled is not None:
                    xu = np.column_stack([x_unlabelled, prev_u])
                    slope, icpt = np.polyfit(prev_l, t, 1)  # calibrate weak labels
                    weak = slope * prev_u + icpt
                    xs = np.concatenate([xs, xu])
                    ts = np.concatenate([t, weak])
                    ws = np.concatenate(
                        [np.ones(n), np.full(len(xu), self.weak_weight)]
                    )
            models, oob = self._fit_bag(xs, ts, ws, rng, n)
            self.stages.append(models)
            if x_unlabelled is not None:
                inp = (
                    x_unlabelled if s == 0 else np.column_stack([x_unlabelled, prev_u])
                )
                prev_u = np.mean([m.predict(inp) for m in models], axis=0)
            prev_l = oob
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted ranking score of each row of ``x`` (higher = better)."""
        if not self.stages:
            raise RuntimeError('CascadeBaggingPredictor.predict called before fit')
        x = np.asarray(x, dtype=np.float64)
        pred = None
        for s, models in enumerate(self.stages):
            inp = x if s == 0 else np.column_stack([x, pred])
            pred = np.mean([m.predict(inp) for m in models], axis=0)
        return pred


class MLPPredictor:
    """Baseline: one MLP (same architecture as a cascade member) on the features."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x, y, x_unlabelled=None):
        """Train on ``(x, y)``; ``x_unlabelled`` is not used."""
        self.model = _mlp(self.seed).fit(x, normal_scores(y))
        return self

    def predict(self, x):
        """Predicted ranking score of each row of ``x``."""
        return self.model.predict(x)


class RFPredictor:
    """Baseline: a random forest (200 trees) on the features."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x, y, x_unlabelled=None):
        """Train on ``(x, y)``; ``x_unlabelled`` is not used."""
        forest = RandomForestRegressor(200, random_state=self.seed)
        self.model = forest.fit(x, normal_scores(y))
        return self

    def predict(self, x):
        """Predicted ranking score of each row of ``x``."""
        return self.model.predict(x)


PREDICTORS = dict(cascade=CascadeBaggingPredictor, mlp=MLPPredictor, rf=RFPredictor)
