"""Evolutionary and random-sampling architecture search with a proxy or
predictor under a budget.

The search keeps a history of every scored architecture. The population is the
``population`` best of the history; each step mutates a tournament winner of the
population into a new architecture within the budget and scores it (when every
neighbour of that parent is scored or over the budget, a mutation of another
population member, else a random architecture). With the
``az_nas`` fitness, the fitness is the AZ-NAS rank aggregation over the whole
history (ranks are relative, so every step re-ranks, as the official evolutionary
search does). :class:`RandomSearch` draws every architecture uniformly instead
and picks the best of the draws by the same fitness: the official NB201 protocol
of AZ-NAS (3,000 random architectures, rank aggregation within them). The history
is written to a JSON state file after every step; a search started with an
existing state file continues from it (the random stream of step ``t`` is seeded
with ``(seed, t)``, so a resumed search equals an uninterrupted one).
"""

import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from mmcompress.utils.checks import check_number

from .scoring import aggregate_ranks

PARENT_TRIES = 100
"""Mutations of the tournament winner tried before the fallback (an NB201 arch
has 24 neighbours)."""


class Budget:
    """FLOPs / parameter limits of a search (None = unlimited).

    Args:
        space (SearchSpace): Space whose ``flops`` / ``build`` measure archs.
        max_flops (float, optional): Largest FLOPs allowed.
        max_params (float, optional): Largest parameter count allowed.
        pool (Callable, optional): ``arch -> bool``; only architectures it accepts
            are allowed (e.g. those a score cache holds).
        pool_name (str): How ``repr`` names the pool. Defaults to 'pool'.
    """

    def __init__(
        self, space, max_flops=None, max_params=None, pool=None, pool_name='pool'
    ):
        self.space, self.pool, self.pool_name = space, pool, pool_name
        self.max_flops = (
            None if max_flops is None else check_number('max_flops', max_flops, 0)
        )
        self.max_params = (
            None if max_params is None else check_number('max_params', max_params, 0)
        )

    def fits(self, arch) -> bool:
        """Whether ``arch`` is within the budget."""
        if self.pool is not None and not self.pool(arch):
            return False
        if self.max_flops is not None and self.space.flops(arch) > self.max_flops:
            return False
        if self.max_params is not None:
            from .flops import count_params

            if count_params(self.space.build(arch)) > self.max_params:
                return False
        return True

    def __repr__(self) -> str:
        pool = '' if self.pool is None else f', pool={self.pool_name}'
        return f'Budget(max_flops={self.max_flops}, max_params={self.max_params}{pool})'


class EvolutionSearch:
    """Evolution of the fittest: tournament parents from the best ``population``
    of the history (see the module docstring).

    Args:
        space (SearchSpace): The search space.
        scorer (Callable): ``arch -> dict`` of named values (proxies or a
            ``predicted`` accuracy); must contain every key of ``fitness_keys``.
        fitness_keys (Sequence[str]): One key = its value is the fitness; several
            = AZ-NAS rank aggregation of those keys over the history.
        budget (Budget): Limits each architecture must fit.
        population (int): Population size. Defaults to 16.
        tournament (int): Tournament size. Defaults to 4.
        seed (int): Seed. Defaults to 0.
        state_file (str, optional): JSON history for resuming.
        max_tries (int): Samples / mutations tried to fit the budget before
            giving up. Defaults to 1000.
    """

    def __init__(
        self,
        space,
        scorer: Callable,
        fitness_keys,
        budget: Budget,
        population: int = 16,
        tournament: int = 4,
        seed: int = 0,
        state_file: Optional[str] = None,
        max_tries: int = 1000,
    ):
        self.space, self.scorer, self.budget = space, scorer, budget
        self.fitness_keys = tuple(fitness_keys)
        self.population = int(check_number('population', population, 2))
        self.tournament = int(check_number('tournament', tournament, 1, population))
        self.seed, self.state_file, self.max_tries = seed, state_file, max_tries
        self.history: List[Dict] = []
        if state_file and osp.exists(state_file):
            with open(state_file) as f:
                state = json.load(f)
            held = (state.get('space'), state.get('seed'))
            if held != (space.name, seed):
                raise ValueError(
                    f'{state_file} holds a search of space={held[0]!r} '
                    f'seed={held[1]}, not space={space.name!r} seed={seed}; '
                    'use another --work-dir or the same settings'
                )
            strategy = state.get('strategy', 'evolution')
            if strategy != self.strategy:
                raise ValueError(
                    f'{state_file} holds a {strategy!r} search, not a '
                    f'{self.strategy!r} one; use another --work-dir or the same '
                    '--strategy'
                )
            self.history = state['history']

    def fitness(self) -> np.ndarray:
        """Fitness of every history entry (higher = better)."""
        cols = {k: [h['scores'][k] for h in self.history] for k in self.fitness_keys}
        if len(self.fitness_keys) == 1:
            return np.nan_to_num(np.asarray(cols[self.fitness_keys[0]]), nan=-np.inf)
        return aggregate_ranks(cols, self.fitness_keys)

    def _fitting(self, propose: Callable, rng, tries: Optional[int] = None) -> tuple:
        seen = {tuple(h['arch']) for h in self.history}
        for _ in range(tries or self.max_tries):
            arch = tuple(propose(rng))
            if arch not in seen and self.budget.fits(arch):
                return arch
        raise ValueError(
            f'no new architecture of {self.space.name} satisfies {self.budget} after '
            f'{self.max_tries} tries (smallest-FLOPs arch of the space has '
            f'{self._min_flops()} FLOPs); raise the budget'
        )

    def _min_flops(self):
        return getattr(self.space, 'min_flops', lambda: 'unknown')()

    strategy = 'evolution'

    def _step(self, t: int):
        rng = np.random.default_rng([self.seed, t])
        if t < self.population:
            arch = self._fitting(self.space.sample, rng)
        else:
            fit = self.fitness()
            pop = np.argsort(-fit, kind='stable')[: self.population]
            cand = rng.choice(pop, self.tournament, replace=False)
            parent = tuple(self.history[int(cand[np.argmax(fit[cand])])]['arch'])
            try:
                arch = self._fitting(
                    lambda r: self.space.mutate(parent, r), rng, PARENT_TRIES
                )
            except ValueError:
                # every neighbour of the parent within the budget is scored: a
                # mutation of any population member, else a new random arch
                try:
                    arch = self._fitting(
                        lambda r: self.space.mutate(
                            tuple(self.history[int(r.choice(pop))]['arch']), r
                        ),
                        rng,
                    )
                except ValueError:
                    arch = self._fitting(self.space.sample, rng)
        self.history.append(dict(arch=list(arch), scores=self.scorer(arch)))

    def run(self, steps: int, progress: bool = True) -> Dict:
        """Run until the history holds ``steps`` architectures; return the best.

        Returns:
            dict: ``arch``, ``scores`` and ``fitness`` of the best architecture.
        """
        start = len(self.history)
        for t in tqdm(range(start, steps), disable=not progress, desc='search'):
            self._step(t)
            self.save()
        fit = self.fitness()
        best = int(np.argmax(fit))
        return dict(self.history[best], fitness=float(fit[best]))

    def save(self):
        """Write the history to ``state_file`` (atomically)."""
        if not self.state_file:
            return
        os.makedirs(osp.dirname(osp.abspath(self.state_file)), exist_ok=True)
        tmp = self.state_file + '.tmp'
        state = dict(
            space=self.space.name,
            seed=self.seed,
            strategy=self.strategy,
            history=self.history,
        )
        with open(tmp, 'w') as f:
            f.write(json.dumps(state))  # the C encoder; json.dump is pure Python
        os.replace(tmp, self.state_file)


class RandomSearch(EvolutionSearch):
    """Uniform random architectures (within the budget, none drawn twice), the
    best of them by the fitness over all draws; same arguments as
    :class:`EvolutionSearch` (``population`` and ``tournament`` are not used).

    With the AZ-NAS keys this is the official NB201 search of AZ-NAS
    (``search_find_best(..., n_samples=3000)`` in ``NB201/tss_general.ipynb``:
    score N random architectures, rank-aggregate within them, take the
    arg-max); the official draw may repeat an architecture, this one does not.
    """

    strategy = 'random'

    def _step(self, t: int):
        rng = np.random.default_rng([self.seed, t])
        arch = self._fitting(self.space.sample, rng)
        self.history.append(dict(arch=list(arch), scores=self.scorer(arch)))
