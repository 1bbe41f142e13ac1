"""Target images without their labels, and source/target pairs for one batch.

:class:`UnlabeledTargetDataset` lists the target images and pairs each with the
pseudo-label file that :class:`~.hooks.PseudoLabelHook` writes for it; it has no
way to read the target's own annotations (training on target labels is
impossible by construction):

* ``data_prefix`` may only hold ``img_path``: a ``seg_map_path`` raises;
* a pseudo-label folder must carry the hook's ``pseudo_labels.json`` marker: a
  folder of label maps from anywhere else (the target's ground truth) raises;
* :class:`LoadPseudoLabel` reads a missing pseudo-label as all-ignore (255), so a
  batch prefetched before the first labels are written contributes no loss.

The target's ground truth stays usable for evaluation only, through an ordinary
labelled dataset in ``val_dataloader`` / ``test_dataloader``.

:class:`UDAPairDataset` yields ``[source sample, random target sample]`` per
index; the ``uda_collate`` function flattens the pairs into one batch whose data
samples carry ``domain='source'`` or ``'target'`` in their metainfo.
"""

import json
import os
import os.path as osp
import random
from typing import List

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.dataset import pseudo_collate
from mmengine.fileio import list_dir_or_file
from mmengine.registry import FUNCTIONS
from mmseg.datasets import BaseSegDataset

from mmcompress.registry import DATASETS, TRANSFORMS

MARKER = 'pseudo_labels.json'


def pseudo_label_name(img_path: str) -> str:
    """File name of the pseudo-label of ``img_path``: its stem plus ``.png``."""
    return osp.splitext(osp.basename(img_path))[0] + '.png'


def check_pseudo_label_dir(path: str) -> None:
    """Raise unless ``path`` is absent, empty or written by the pseudo-label hook."""
    if not osp.isdir(path) or not os.listdir(path):
        return
    if not osp.isfile(osp.join(path, MARKER)):
        raise ValueError(
            f'pseudo_label_dir={path!r} holds files but no {MARKER} written by '
            'PseudoLabelHook: it looks like a folder of true target labels, which '
            'must not be used for training. Point pseudo_label_dir at an empty or '
            'new folder; evaluate on the target labels through val_dataloader.'
        )


@DATASETS.register_module()
class UnlabeledTargetDataset(BaseSegDataset):
    """Target-domain images whose training labels are pseudo-labels only.

    Args:
        pseudo_label_dir (str): Folder of the pseudo-label maps (written by
            ``PseudoLabelHook``); a relative path is taken from the working
            directory (not from ``data_root``), like ``work_dir``.
        img_suffix (str): Image file suffix. Defaults to ``'.png'``.
        **kwargs: Passed to ``mmseg.datasets.BaseSegDataset`` (``data_root``,
            ``data_prefix=dict(img_path=...)``, ``pipeline``, ``metainfo``...).
    """

    def __init__(self, pseudo_label_dir: str, img_suffix: str = '.png', **kwargs):
        prefix = dict(kwargs.get('data_prefix') or {})
        extra = sorted(set(prefix) - {'img_path'})
        if extra:
            raise ValueError(
                f'UnlabeledTargetDataset takes data_prefix=dict(img_path=...) only, '
                f'got {extra}: target labels cannot be used for training. '
                'Evaluate on them with an ordinary dataset in val_dataloader.'
            )
        self.pseudo_label_dir = pseudo_label_dir
        super().__init__(img_suffix=img_suffix, reduce_zero_label=False, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Images of ``img_path``, each with its (future) pseudo-label path."""
        check_pseudo_label_dir(self.pseudo_label_dir)
        data_list = []
        img_dir = self.data_prefix['img_path']
        for img in sorted(
            list_dir_or_file(
                img_dir, list_dir=False, suffix=self.img_suffix, recursive=True
            )
        ):
            data_list.append(
                dict(
                    img_path=osp.join(img_dir, img),
                    seg_map_path=osp.join(
                        self.pseudo_label_dir, pseudo_label_name(img)
                    ),
                    label_map=None,
                    reduce_zero_label=False,
                    seg_fields=[],
                )
            )
        return data_list


@TRANSFORMS.register_module()
class LoadPseudoLabel(BaseTransform):
    """Read ``seg_map_path`` as ``gt_seg_map``; a missing file reads as all 255.

    Args:
        ignore_index (int): Value of a missing map. Defaults to 255.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Add ``gt_seg_map`` (uint8) and register it in ``seg_fields``."""
        path = results['seg_map_path']
        if osp.isfile(path):
            seg = mmcv.imread(path, flag='unchanged', backend='pillow')
        else:
            seg = np.full(results['img'].shape[:2], self.ignore_index, np.uint8)
        results['gt_seg_map'] = seg.astype(np.uint8)
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results


@TRANSFORMS.register_module()
class MapLabelIds(BaseTransform):
    """Map raw label ids of ``gt_seg_map`` to train ids; unmapped ids become 255.

    For source datasets stored with their own ids (GTA5: Cityscapes label ids;
    SYNTHIA: its ids in one channel of a 16-bit PNG).

    Args:
        mapping (dict[int, int]): Raw id -> train id.
        channel (int, optional): Channel of a multi-channel label map to read.
        ignore_index (int): Value of unmapped ids. Defaults to 255.
    """

    def __init__(self, mapping: dict, channel=None, ignore_index: int = 255) -> None:
        self.mapping, self.channel = dict(mapping), channel
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Replace ``results['gt_seg_map']`` by its train-id map (uint8)."""
        seg = results['gt_seg_map']
        if self.channel is not None and seg.ndim == 3:
            seg = seg[..., self.channel]
        out = np.full(seg.shape, self.ignore_index, np.uint8)
        for raw, train in self.mapping.items():
            out[seg == raw] = train
        results['gt_seg_map'] = out
        return results


def write_marker(path: str, info: dict) -> None:
    """Write the hook's marker file into the pseudo-label folder ``path``."""
    with open(osp.join(path, MARKER), 'w') as f:
        json.dump(info, f, indent=1)


@DATASETS.register_module()
class UDAPairDataset:
    """Pairs each source sample with a random target sample.

    Args:
        source (dict): Config of the labelled source dataset.
        target (dict): Config of the :class:`UnlabeledTargetDataset`.
    """

    def __init__(self, source: dict, target: dict) -> None:
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        if not isinstance(self.target, UnlabeledTargetDataset):
            raise TypeError(
                'UDAPairDataset: target must be an UnlabeledTargetDataset (images '
                f'with pseudo-labels only), got {type(self.target).__name__}.'
            )
        if len(self.target) == 0:
            raise ValueError('UDAPairDataset: the target dataset has no images.')

    @property
    def metainfo(self) -> dict:
        """The source dataset's metainfo (classes, palette)."""
        return self.source.metainfo

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, idx: int) -> list:
        src = self.source[idx]
        tgt = self.target[random.randrange(len(self.target))]
        src['data_samples'].set_metainfo(dict(domain='source'))
        tgt['data_samples'].set_metainfo(dict(domain='target'))
        return [src, tgt]


@FUNCTIONS.register_module()
def uda_collate(data_batch: list) -> dict:
    """Flatten ``[source, target]`` pairs (sources first), then ``pseudo_collate``."""
    flat = [pair[0] for pair in data_batch] + [pair[1] for pair in data_batch]
    return pseudo_collate(flat)
