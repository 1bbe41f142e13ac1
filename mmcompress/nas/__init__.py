"""Architecture search: the NB201 space and its network, training-free proxies
(AZ-NAS and baselines) with rank aggregation, accuracy predictors, a one-shot
supernet, and the search loop used by ``tools/search.py``."""

from .benchmark_table import NB201Table
from .flops import count_flops, count_params
from .mbv2_space import MobileNetSpace, MobileNetSpaceBackbone
from .nb201 import NB201Backbone, TinyNetwork
from .proxies import az_nas, naswot, synflow, zico
from .scoring import PROXIES, aggregate_ranks, rank_correlation, score_arch
from .space import NB201_OPS, NB201Space, SearchSpace, format_nb201, parse_nb201
from .supernet import NB201Supernet

__all__ = [
    'NB201Table',
    'count_flops',
    'count_params',
    'MobileNetSpace',
    'MobileNetSpaceBackbone',
    'NB201Backbone',
    'NB201Supernet',
    'TinyNetwork',
    'az_nas',
    'naswot',
    'synflow',
    'zico',
    'PROXIES',
    'aggregate_ranks',
    'rank_correlation',
    'score_arch',
    'NB201_OPS',
    'NB201Space',
    'SearchSpace',
    'format_nb201',
    'parse_nb201',
]
