"""Search-space interface and the NAS-Bench-201 topology space.

A search space turns an architecture description into a network and into features
for predictors, and samples / mutates descriptions for search. The NAS-Bench-201
(NB201) space is a cell with 4 nodes and 6 edges, each edge one of five operations,
so ``5 ** 6 = 15,625`` architectures. Architectures are written in the benchmark's
string notation::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

``|op~j|`` is the edge from node ``j`` into the current node, nodes are separated by
``+``; node 1 has one input, node 2 two, node 3 three. Internally an architecture
is the tuple of six op indices in the edge order ``(1<-0, 2<-0, 2<-1, 3<-0, 3<-1,
3<-2)``.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch.nn as nn

NB201_OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
# input-to-output paths as edge indices: 0->3, 0->1->3, 0->2->3, 0->1->2->3
NB201_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


class SearchSpace:
    """What search, proxies and predictors need from a space.

    A subclass defines the architecture type (any hashable value) and implements
    every method below; :class:`NB201Space` and
    :class:`~mmcompress.nas.mbv2_space.MobileNetSpace` are the two in the package.
    """

    name = 'space'
    input_shape = (3, 32, 32)
    # True when ``flops`` is a closed form for ``input_shape`` (no network built)
    closed_form_flops = False

    def sample(self, rng: np.random.Generator):
        """Return one architecture drawn uniformly at random."""
        raise NotImplementedError

    def mutate(self, arch, rng: np.random.Generator):
        """Return a copy of ``arch`` with one random choice changed."""
        raise NotImplementedError

    def encode(self, arch) -> np.ndarray:
        """Return a fixed-length float feature vector of ``arch`` (for predictors)."""
        raise NotImplementedError

    def build(self, arch, num_classes: int = 10) -> nn.Module:
        """Return the network of ``arch`` (with ``extract_features(x)``)."""
        raise NotImplementedError

    def flops(self, arch) -> int:
        """FLOPs of ``arch`` for one input (counted on the built network)."""
        from .flops import count_flops

        return count_flops(self.build(arch), self.input_shape)

    def to_str(self, arch) -> str:
        """Return the text form of ``arch``."""
        raise NotImplementedError

    def from_str(self, text: str):
        """Parse the text form written by :meth:`to_str`."""
        raise NotImplementedError

    def backbone_cfg(self, arch) -> dict:
        """Return the mmpretrain backbone config dict that builds ``arch``."""
        raise NotImplementedError


def parse_nb201(text: str, ops: Sequence[str] = NB201_OPS) -> Tuple[int, ...]:
    """Parse an NB201 architecture string into six op indices.

    Args:
        text (str): e.g. ``'|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|'``.
        ops (Sequence[str]): The op names of the space. Defaults to NB201_OPS.

    Returns:
        tuple[int]: Op index per edge, edge order ``NB201_EDGES``.

    Raises:
        ValueError: The string is malformed; the message names the part.
    """
    if not isinstance(text, str):
        raise TypeError(f'NB201 arch string must be a str, got {type(text).__name__}')
    example = '|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|'
    nodes = text.strip().split('+')
    if len(nodes) != 3:
        raise ValueError(
            f'NB201 arch string {text!r} has {len(nodes)} node(s) separated by "+", '
            f'expected 3 (e.g. {example!r})'
        )
    codes = []
    for node, part in enumerate(nodes, start=1):
        if not (part.startswith('|') and part.endswith('|')) or len(part) < 2:
            raise ValueError(
                f'NB201 arch string {text!r}: node {node} part {part!r} must be '
                f'"|op~input|..." enclosed in "|"'
            )
        edges = part[1:-1].split('|')
        if len(edges) != node:
            raise ValueError(
                f'NB201 arch string {text!r}: node {node} has {len(edges)} input '
                f'edge(s), expected {node}'
            )
        for expected_in, edge in enumerate(edges):
            op, sep, src = edge.partition('~')
            if not sep or src != str(expected_in):
                raise ValueError(
                    f'NB201 arch string {text!r}: edge {edge!r} of node {node} must '
                    f'read "<op>~{expected_in}"'
                )
            if op not in ops:
                raise ValueError(
                    f'NB201 arch string {text!r}: unknown op {op!r}; valid ops are '
                    f'{list(ops)}'
                )
            codes.append(ops.index(op))
    return tuple(codes)


def format_nb201(arch: Sequence[int], ops: Sequence[str] = NB201_OPS) -> str:
    """Write six op indices as an NB201 architecture string (inverse of parse)."""
    arch = check_nb201_arch(arch, len(ops))
    parts, k = [], 0
    for node in (1, 2, 3):
        edges = [f'{ops[arch[k + j]]}~{j}' for j in range(node)]
        parts.append('|' + '|'.join(edges) + '|')
        k += node
    return '+'.join(parts)


def check_nb201_arch(arch: Sequence[int], num_ops: int = 5) -> Tuple[int, ...]:
    """Return ``arch`` as a tuple after checking it is six valid op indices."""
    arch = tuple(int(a) for a in arch)
    if len(arch) != 6 or any(a < 0 or a >= num_ops for a in arch):
        raise ValueError(
            f'NB201 architecture must be 6 op indices in [0, {num_ops - 1}] '
            f'(edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), got {arch}'
        )
    return arch


class NB201Space(SearchSpace):
    """The NAS-Bench-201 topology space (TinyNetwork, C=16, N=5 by default).

    Args:
        ops (Sequence[str]): Op names; must be the five NB201 ops in the NB201
            order, since benchmark tables index them. Defaults to NB201_OPS.
        C (int): Stem channels. Defaults to 16.
        N (int): Cells per stage. Defaults to 5.
    """

    name = 'nb201'
    closed_form_flops = True

    def __init__(self, ops: Sequence[str] = NB201_OPS, C: int = 16, N: int = 5):
        if tuple(ops) != NB201_OPS:
            raise ValueError(
                f'NB201Space ops must be {list(NB201_OPS)} in this order (the '
                f'benchmark table and arch strings index them), got {list(ops)}'
            )
        self.ops = tuple(ops)
        self.C, self.N = int(C), int(N)

    def sample(self, rng: np.random.Generator) -> Tuple[int, ...]:
        """Return one architecture with uniformly random ops."""
        return tuple(int(x) for x in rng.integers(0, len(self.ops), size=6))

    def mutate(self, arch, rng: np.random.Generator) -> Tuple[int, ...]:
        """Change the op of one random edge to a different op."""
        arch = list(check_nb201_arch(arch))
        edge = int(rng.integers(6))
        choices = [o for o in range(len(self.ops)) if o != arch[edge]]
        arch[edge] = int(rng.choice(choices))
        return tuple(arch)

    def encode(self, arch) -> np.ndarray:
        """One-hot of the op per edge (30 values)."""
        arch = check_nb201_arch(arch)
        feat = np.zeros((6, len(self.ops)), dtype=np.float32)
        feat[np.arange(6), arch] = 1.0
        return feat.reshape(-1)

    def path_encode(self, arch) -> np.ndarray:
        """Path encoding: one indicator per op sequence of each of the four
        input-to-output paths (0-3, 0-1-3, 0-2-3, 0-1-2-3): 5 + 25 + 25 + 125 = 180
        values; paths through ``none`` are dropped (they carry nothing)."""
        arch = check_nb201_arch(arch)
        n = len(self.ops)
        feats = []
        for edges in NB201_PATHS:
            block = np.zeros(n ** len(edges), dtype=np.float32)
            ops = [arch[e] for e in edges]
            if 0 not in ops:
                block[int(np.ravel_multi_index(ops, (n,) * len(ops)))] = 1.0
            feats.append(block)
        return np.concatenate(feats)

    @staticmethod
    def live_arch(arch) -> Tuple[int, ...]:
        """``arch`` with every edge that lies on no input-to-output path of
        non-``none`` ops set to ``none`` (such an edge cannot change the output, so
        architectures with the same live cell compute the same function)."""
        arch = check_nb201_arch(arch)
        live = set()
        for edges in NB201_PATHS:
            if all(arch[e] != 0 for e in edges):
                live.update(edges)
        return tuple(op if e in live else 0 for e, op in enumerate(arch))

    def effective_encode(self, arch) -> np.ndarray:
        """One-hot of the live cell (:meth:`live_arch`, 30 values) plus three
        closed-form values: live conv cost ``(9 n_3x3 + n_1x1) / 54``, the largest
        number of convs on one live path / 3, and 1 if the cell is connected."""
        live = self.live_arch(arch)
        convs = [
            sum(live[e] in (2, 3) for e in edges)
            for edges in NB201_PATHS
            if all(live[e] != 0 for e in edges)
        ]
        cost = (9 * live.count(3) + live.count(2)) / 54
        extra = [cost, max(convs, default=0) / 3, float(bool(convs))]
        return np.concatenate([self.encode(live), np.float32(extra)])

    def min_flops(self) -> int:
        """FLOPs of the cheapest architecture (every edge parameter-free)."""
        return self.flops((0,) * 6)

    def build(self, arch, num_classes: int = 10) -> nn.Module:
        """Return the TinyNetwork of ``arch``."""
        from .nb201 import TinyNetwork

        return TinyNetwork(check_nb201_arch(arch), self.C, self.N, num_classes)

    def flops(self, arch) -> int:
        """FLOPs in closed form: the empty cell's network plus, per cell, 9 C^2 HW
        per 3x3 conv edge and C^2 HW per 1x1 edge (the same in every stage)."""
        arch = check_nb201_arch(arch)
        if not hasattr(self, '_base_flops'):
            from .flops import count_flops

            self._base_flops = count_flops(self.build((0,) * 6), self.input_shape)
        per_cell = (
            (9 * arch.count(3) + arch.count(2))
            * self.C**2
            * self.input_shape[1]
            * self.input_shape[2]
        )
        return self._base_flops + 3 * self.N * per_cell

    def to_str(self, arch) -> str:
        """Return the NB201 string of ``arch``."""
        return format_nb201(arch, self.ops)

    def from_str(self, text: str) -> Tuple[int, ...]:
        """Parse an NB201 string."""
        return parse_nb201(text, self.ops)

    def all_archs(self) -> List[Tuple[int, ...]]:
        """All 15,625 architectures in lexicographic op-index order."""
        grid = np.stack(np.meshgrid(*[range(5)] * 6, indexing='ij'), -1)
        return [tuple(int(v) for v in row) for row in grid.reshape(-1, 6)]

    def backbone_cfg(self, arch) -> Dict:
        """The ``NB201Backbone`` config dict of ``arch``."""
        return dict(type='NB201Backbone', arch=self.to_str(arch), C=self.C, N=self.N)
