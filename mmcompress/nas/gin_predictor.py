"""A GIN-style graph predictor baseline for the NB201 cell.

The cell is turned into an op-node graph: node 0 is the cell input, nodes 1-6 the
six edges' ops (edge order of :mod:`mmcompress.nas.space`), node 7 the output. An op
node of edge ``i <- j`` receives from the input (``j = 0``) or from every op node
ending in node ``j``; the output receives from the op nodes ending in node 3. A
``none`` op node sends and receives nothing. Node features are one-hot (5 ops,
input, output). Three GIN layers ``h <- MLP((1 + eps) h + A h)``, a sum readout and
a linear head regress the rank normal scores, like the other predictors. Input rows
may carry graph-level features after the six op indices (e.g. zero-cost proxy
ranks); the head then reads them next to the readout.
"""

import numpy as np
import torch
import torch.nn as nn

from mmcompress.utils.checks import check_number

from .space import NB201_EDGES, check_nb201_arch


def nb201_graph(arch):
    """Adjacency (8 x 8, ``A[dst, src]``) and node features (8 x 7) of ``arch``."""
    arch = check_nb201_arch(arch)
    adj = np.zeros((8, 8), dtype=np.float32)
    feat = np.zeros((8, 7), dtype=np.float32)
    feat[0, 5] = feat[7, 6] = 1.0
    for e, ((dst, src), op) in enumerate(zip(NB201_EDGES, arch)):
        feat[e + 1, op] = 1.0
        if op == 0:
            continue
        if src == 0:
            adj[e + 1, 0] = 1.0
        for e2, ((dst2, _), op2) in enumerate(zip(NB201_EDGES, arch)):
            if dst2 == src and op2 != 0:
                adj[e + 1, e2 + 1] = 1.0
        if dst == 3:
            adj[7, e + 1] = 1.0
    return adj, feat


class _GIN(nn.Module):
    def __init__(self, hidden: int, layers: int, extra: int = 0):
        super().__init__()
        dims = [7] + [hidden] * layers
        self.eps = nn.Parameter(torch.zeros(layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b), nn.ReLU())
            for a, b in zip(dims[:-1], dims[1:])
        )
        self.head = nn.Linear(hidden + extra, 1)

    def forward(self, adj, feat, extra):
        h = feat
        for eps, mlp in zip(self.eps, self.mlps):
            h = mlp((1 + eps) * h + adj @ h)
        return self.head(torch.cat([h.sum(1), extra], 1)).squeeze(-1)


class GINPredictor:
    """GIN on the op-node graph (see the module docstring).

    ``fit`` / ``predict`` take rows of six NB201 op indices, optionally followed
    by graph-level features (the same number in ``fit`` and ``predict``).

    Args:
        hidden (int): Node feature width. Defaults to 32.
        layers (int): GIN layers. Defaults to 3.
        epochs (int): Full-batch Adam steps. Defaults to 300.
        lr (float): Learning rate. Defaults to 3e-3.
        seed (int): Torch seed. Defaults to 0.
    """

    def __init__(self, hidden=32, layers=3, epochs=300, lr=3e-3, seed=0):
        owner = 'GINPredictor'
        self.hidden = int(check_number('hidden', hidden, 1, owner=owner))
        self.layers = int(check_number('layers', layers, 1, owner=owner))
        self.epochs = int(check_number('epochs', epochs, 1, owner=owner))
        self.lr = check_number('lr', lr, 0, owner=owner)
        self.seed = seed

    @staticmethod
    def _inputs(archs):
        """Adjacency, node features and graph-level features of the rows."""
        rows = np.asarray(archs, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] < 6:
            raise ValueError(
                'GINPredictor takes rows of six NB201 op indices (plus optional '
                f'graph-level features), got an array of shape {rows.shape}'
            )
        ops = rows[:, :6].astype(int)
        if not np.array_equal(ops, rows[:, :6]):
            raise ValueError('the first six columns must be integer op indices')
        adj, feat = zip(*(nb201_graph(a) for a in ops))
        extra = torch.tensor(rows[:, 6:], dtype=torch.float32)
        return torch.from_numpy(np.stack(adj)), torch.from_numpy(np.stack(feat)), extra

    def fit(self, archs, y, x_unlabelled=None, weak=None):
        """Train on NB201 op-index rows ``archs`` and accuracies ``y``
        (``x_unlabelled`` and ``weak`` are not used)."""
        from .predictor import normal_scores

        torch.manual_seed(self.seed)
        adj, feat, extra = self._inputs(archs)
        t = torch.tensor(normal_scores(y), dtype=torch.float32)
        self.model = _GIN(self.hidden, self.layers, extra.shape[1])
        opt = torch.optim.Adam(self.model.parameters(), self.lr, weight_decay=1e-4)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = ((self.model(adj, feat, extra) - t) ** 2).mean()
            loss.backward()
            opt.step()
        return self

    @torch.no_grad()
    def predict(self, archs) -> np.ndarray:
        """Predicted ranking score of each architecture row."""
        if not hasattr(self, 'model'):
            raise RuntimeError('GINPredictor.predict called before fit')
        adj, feat, extra = self._inputs(archs)
        expected = self.model.head.in_features - self.hidden
        if extra.shape[1] != expected:
            raise ValueError(
                f'GINPredictor was fitted with {expected} graph-level features, '
                f'got {extra.shape[1]}'
            )
        return self.model(adj, feat, extra).numpy().astype(np.float64)
