"""Few-sample accuracy predictors: cascade bagging with feature-noise augmentation
and weak-label calibration, and the single-model / forest / MLP / GIN baselines.

:class:`CascadeBaggingPredictor` follows the CVPR 2021 Lightweight NAS challenge
track-2 solution ("Cascade Bagging for Accuracy Prediction with Few Training
Samples", arXiv 2108.05613; code dlongry/Solution-to-CVPR2021-NAS-Track2):

* **first level**: ``num_first`` base regressors (``NuSVR(C=1, gamma='scale')``, the
  official model zoo's SVM), each fitted on a bootstrap sample of the labelled
  architectures plus a bootstrap sample of the weak-labelled ones;
* **feature-noise augmentation**: each bootstrap set is doubled by one copy whose
  features carry zero-mean Gaussian noise at a signal-to-noise ratio of ``snr_db``
  (1 dB as official: noise variance = mean power of the centred features /
  10^(snr/10)); labels are copied unchanged;
* **second level**: ``num_second`` ridge regressions (alpha 1; the official
  second-level model is not released, and an SVM there ranked worse: tau 0.68 vs
  0.71 on NB201, k = 100), each on a random ``feature_frac`` of
  the first-level outputs (sampling data and features) concatenated with the 3-D
  PCA of the architecture features (official ``pca_reduce=3, concat=True``); their
  mean is the prediction. The official training of this level is not released; here
  it trains on cross-fitted first-level outputs of the labelled architectures
  (``num_folds`` folds), so it learns how the bag generalises, not how it fits;
* **weak-label calibration**: unlabelled architectures get weak labels from a cheap
  source (``weak``, e.g. a zero-cost proxy; without one, a first bag's prediction).
  As official, the weak set is split into 3 groups by weak-label rank; each group
  gets a bias (official: grid search) and is blended with the bag's prediction,
  ``a * (weak + bias) + (1 - a) * pred`` (official: ``a`` in 0, 0.1, ..., 1 per
  architecture, chosen by the RMSE on the labelled set of an SVM trained on the weak
  set). Here ``a`` (0, 0.25, ..., 1) and the bias (-1, -0.5, ..., 1) are chosen per
  group by that same criterion.

All predictors regress the normal scores of the accuracy ranks
(``Phi^-1((rank - 0.5) / k)``), so the few very poor architectures (about 10 %
accuracy, disconnected cells) do not dominate a squared loss; predictions are
therefore ranking scores (higher = better), not accuracies. Weak sources are mapped
to normal scores of their ranks too.
"""

from typing import Optional

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.svm import NuSVR

from mmcompress.utils.checks import check_number

from .gin_predictor import GINPredictor


def normal_scores(y) -> np.ndarray:
    """Normal scores of the ranks of ``y`` (ties share their average rank)."""
    y = np.asarray(y, dtype=np.float64)
    return stats.norm.ppf((stats.rankdata(y) - 0.5) / len(y))


def feature_noise(x, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """``x`` plus zero-mean Gaussian noise at ``snr_db`` dB signal-to-noise ratio
    (signal power = mean square of ``x - x.mean()``)."""
    noise = rng.standard_normal(x.shape)
    noise -= noise.mean()
    power = np.mean((x - x.mean()) ** 2) / 10 ** (snr_db / 10)
    return x + noise * np.sqrt(power) / max(noise.std(), 1e-12)


def _svr():
    return NuSVR(C=1.0, gamma='scale', tol=5e-3)


def _gbdt(seed=0):
    # the official first level's ``XGBRegressor(max_depth=4, learning_rate=0.24,
    # n_estimators=30)``, with scikit-learn's gradient boosting
    return GradientBoostingRegressor(
        max_depth=4, learning_rate=0.24, n_estimators=30, random_state=seed
    )


class CascadeBaggingPredictor:
    """Two-level cascade bagging (see the module docstring).

    Args:
        num_first (int): First-level models. Defaults to 20.
        num_second (int): Second-level models. Defaults to 10.
        feature_frac (float): Fraction of first-level outputs each second-level
            model sees. Defaults to 0.5.
        snr_db (float): Feature-noise SNR in dB; ``None`` disables the noisy
            copy. Defaults to 1.0.
        num_weak (int): Weak-labelled archs drawn (with replacement) per
            first-level model. Defaults to 300.
        num_folds (int): Folds for the cross-fitted second-level inputs.
            Defaults to 5.
        base (str): First-level model: ``'svr'`` (NuSVR) or ``'gbdt'`` (gradient
            boosting with the official XGBoost settings). Defaults to 'gbdt'.
        seed (int): Random seed. Defaults to 0.
    """

    GRID_A = np.linspace(0, 1, 5)
    GRID_BIAS = np.linspace(-1, 1, 5)

    def __init__(
        self,
        num_first: int = 20,
        num_second: int = 10,
        feature_frac: float = 0.5,
        snr_db: Optional[float] = 1.0,
        num_weak: int = 300,
        num_folds: int = 5,
        base: str = 'gbdt',
        seed: int = 0,
    ):
        owner = 'CascadeBaggingPredictor'
        self.num_first = int(check_number('num_first', num_first, 1, owner=owner))
        self.num_second = int(check_number('num_second', num_second, 1, owner=owner))
        self.feature_frac = check_number(
            'feature_frac', feature_frac, 0, 1, owner=owner
        )
        self.snr_db = snr_db
        self.num_weak = int(check_number('num_weak', num_weak, 0, owner=owner))
        self.num_folds = int(check_number('num_folds', num_folds, 2, owner=owner))
        if base not in ('svr', 'gbdt'):
            raise ValueError(
                f"CascadeBaggingPredictor base must be 'svr' or 'gbdt', got {base!r}"
            )
        self.base = base
        self.seed = seed
        self.first = self.second = None

    def _bag(self, x, t, xw, tw, rng):
        """First-level models fitted on bootstrap (+ weak, + noisy) samples."""
        models = []
        for _ in range(self.num_first):
            idx = rng.integers(0, len(x), len(x))
            xs, ts = x[idx], t[idx]
            if xw is not None and self.num_weak:
                widx = rng.integers(0, len(xw), self.num_weak)
                xs, ts = np.concatenate([xs, xw[widx]]), np.concatenate([ts, tw[widx]])
            if self.snr_db is not None:
                xs = np.concatenate([xs, feature_noise(xs, rng, self.snr_db)])
                ts = np.tile(ts, 2)
            base = _svr() if self.base == 'svr' else _gbdt(int(rng.integers(2**31)))
            models.append(base.fit(xs, ts))
        return models

    @staticmethod
    def _outputs(models, x):
        return np.column_stack([m.predict(x) for m in models])

    def calibrate_weak(self, x, t, xw, src, pred):
        """Per rank-tercile of ``src``: bias and blend weight with ``pred`` that
        minimise the RMSE on ``(x, t)`` of an SVM trained on the weak set."""
        groups = np.array_split(np.argsort(src, kind='stable'), 3)
        weak = np.array(src, dtype=np.float64)  # uncalibrated groups keep the source
        self.weak_params = []
        for g in groups:
            best = (np.inf, 0.0, 0.0)
            for a in self.GRID_A:
                for b in self.GRID_BIAS if a > 0 else [0.0]:
                    trial = weak.copy()
                    trial[g] = a * (src[g] + b) + (1 - a) * pred[g]
                    err = np.sqrt(np.mean((_svr().fit(xw, trial).predict(x) - t) ** 2))
                    if err < best[0]:
                        best = (err, a, b)
            _, a, b = best
            weak[g] = a * (src[g] + b) + (1 - a) * pred[g]
            self.weak_params.append(dict(a=float(a), bias=float(b), rmse=best[0]))
        return weak

    def fit(self, x, y, x_unlabelled=None, weak=None):
        """Train on labelled ``(x, y)``.

        Args:
            x (np.ndarray): Features of the labelled archs, (k, d).
            y (np.ndarray): Their accuracies, (k,).
            x_unlabelled (np.ndarray, optional): Features of archs to weak-label.
            weak (np.ndarray, optional): Weak-label source of ``x_unlabelled``
                (higher = better); without it the first bag's prediction.

        Returns:
            CascadeBaggingPredictor: self.
        """
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if len(x) != len(y) or len(x) < self.num_folds:
            raise ValueError(
                f'CascadeBaggingPredictor.fit needs >= num_folds={self.num_folds} '
                f'labelled archs and as many labels as feature rows, got {len(x)} '
                f'rows and {len(y)} labels'
            )
        rng = np.random.default_rng(self.seed)
        t = normal_scores(y)
        xw = tw = None
        if x_unlabelled is not None:
            xw = np.asarray(x_unlabelled, dtype=np.float64)
            if weak is not None and len(weak) != len(xw):
                raise ValueError(
                    f'weak has {len(weak)} values for {len(xw)} unlabelled archs'
                )
            pred = self._outputs(self._bag(x, t, None, None, rng), xw).mean(1)
            src = pred if weak is None else normal_scores(weak)
            tw = self.calibrate_weak(x, t, xw, src, pred)
        self.pca = PCA(3, random_state=0).fit(x if xw is None else np.vstack([x, xw]))
        self.first = self._bag(x, t, xw, tw, rng)
        cross = np.zeros((len(x), self.num_first))
        folds = np.array_split(rng.permutation(len(x)), self.num_folds)
        for fold in folds:
            rest = np.setdiff1d(np.arange(len(x)), fold)
            cross[fold] = self._outputs(
                self._bag(x[rest], t[rest], xw, tw, rng), x[fold]
            )
        keep = max(1, int(round(self.feature_frac * self.num_first)))
        pcs = self.pca.transform(x)
        self.second = []
        for _ in range(self.num_second):
            cols = np.sort(rng.choice(self.num_first, keep, replace=False))
            inp = np.column_stack([cross[:, cols], pcs])
            self.second.append((cols, Ridge(1.0).fit(inp, t)))
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted ranking score of each row of ``x`` (higher = better)."""
        if self.first is None:
            raise RuntimeError('CascadeBaggingPredictor.predict called before fit')
        x = np.asarray(x, dtype=np.float64)
        out, pcs = self._outputs(self.first, x), self.pca.transform(x)
        return np.mean(
            [m.predict(np.column_stack([out[:, c], pcs])) for c, m in self.second],
            axis=0,
        )


class _Single:
    """A baseline: one sklearn regressor on the features and rank targets."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x, y, x_unlabelled=None, weak=None):
        """Train on ``(x, y)``; ``x_unlabelled`` and ``weak`` are not used."""
        self.model = self.make().fit(x, normal_scores(y))
        return self

    def predict(self, x):
        """Predicted ranking score of each row of ``x``."""
        return self.model.predict(x)


class SVRPredictor(_Single):
    """Baseline: one cascade base model (NuSVR) on the labelled archs alone."""

    def make(self):
        return _svr()


class MLPPredictor(_Single):
    """Baseline: one MLP (64-64, Adam, 500 iterations)."""

    def make(self):
        return MLPRegressor(
            hidden_layer_sizes=(64, 64),
            alpha=1e-3,
            learning_rate_init=3e-3,
            max_iter=500,
            random_state=self.seed,
        )


class RFPredictor(_Single):
    """Baseline: a random forest (200 trees)."""

    def make(self):
        return RandomForestRegressor(200, random_state=self.seed)


PREDICTORS = dict(
    cascade=CascadeBaggingPredictor,
    svr=SVRPredictor,
    mlp=MLPPredictor,
    rf=RFPredictor,
    gin=GINPredictor,
)
