"""The incremental protocol as data: one step's images and labels of any
mmseg segmentation dataset.

:class:`IncrementalSegDataset` wraps a dataset whose label maps hold
background at 0, foreground classes ``1..C`` and an ignore value (255), and
serves the images and labels of one step of a split (:mod:`.split`), as the
official DKD code does (``data_loader/dataset.py``):

* ``mode='train'``: the images that contain a class of the step; in the
  ``'disjoint'`` setting only those whose labels are all background, ignore,
  old or current classes (no future class in the image). Labels of every
  class but the step's own become background (``masking_value`` 0, in both
  settings: old and future objects are background at training time);
* ``mode='test'``: the images that contain any class seen up to the step,
  with full labels of the seen classes; unseen (future) classes become
  background.

Class ids are remapped to the order the steps learn them (identity for split
strings, whose steps take the classes in dataset order), and the meta
(``metainfo``) lists background and the seen classes in that order, so a
model of the step and mmseg's metrics see ``1 + |seen|`` classes. The meta
also holds ``split``, ``step``, ``setting`` and ``class_steps`` (per step,
the model's class indices it added).
"""

import copy
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.registry import DefaultScope
from PIL import Image

from mmcompress.registry import DATASETS

from .split import check_step, parse_split

SETTINGS = ('overlap', 'disjoint')
MODES = ('train', 'test')


def image_labels(seg_map_path: str) -> List[int]:
    """Sorted label values present in a label map file."""
    return np.unique(np.asarray(Image.open(seg_map_path))).tolist()


@DATASETS.register_module()
class IncrementalSegDataset:
    """One step of a class-incremental split of a segmentation dataset.

    Args:
        dataset (dict | Dataset): The dataset (config or object); its label
            maps hold background 0 and classes ``1..C`` (no
            ``reduce_zero_label``, no ``label_map`` of its own).
        split (str | list[list[int]]): The split (:func:`.parse_split`).
        step (int): The step served.
        setting (str): ``'overlap'`` (default) or ``'disjoint'``.
        mode (str): ``'train'`` (the step's images, only its classes
            labelled) or ``'test'`` (images with seen classes, all seen
            classes labelled).
        ignore_index (int): Label value left as it is. Defaults to 255.
        index_file (str, optional): JSON cache of the labels present in each
            label map (read if it exists, else written); the first build of a
            large dataset reads every label map once.
        background_name (str, optional): For a dataset whose classes do not
            list its label 0 (ADE20K's 150 without "other"): the name of label
            0, put before them. None: ``classes[0]`` is background.
    """

    def __init__(
        self,
        dataset: Union[dict, object],
        split: Union[str, Sequence[Sequence[int]]],
        step: int,
        setting: str = 'overlap',
        mode: str = 'train',
        ignore_index: int = 255,
        index_file: Optional[str] = None,
        background_name: Optional[str] = None,
    ) -> None:
        if setting not in SETTINGS:
            raise ValueError(f'setting={setting!r} is invalid; use one of {SETTINGS}.')
        if mode not in MODES:
            raise ValueError(f'mode={mode!r} is invalid; use one of {MODES}.')
        if isinstance(dataset, dict):
            # mmseg's dataset classes, also when built outside a Runner
            scope = DefaultScope.get_current_instance()
            with DefaultScope.overwrite_default_scope(None if scope else 'mmseg'):
                dataset = DATASETS.build(dataset)
        self.dataset = dataset
        meta = self.dataset.metainfo
        own_map = getattr(self.dataset, 'label_map', None)
        if meta.get('reduce_zero_label') or own_map:
            raise ValueError(
                f'{type(self.dataset).__name__} remaps its labels '
                f'(reduce_zero_label={meta.get("reduce_zero_label")}, '
                f'label_map={own_map}): incremental steps need '
                'background at 0 and the classes at 1..C in the label maps. Use '
                'reduce_zero_label=False and no class subset in its metainfo.'
            )
        names = list(meta['classes'])
        if background_name is not None:
            names.insert(0, background_name)
            if meta.get('palette'):
                meta = dict(meta, palette=[[0, 0, 0]] + list(meta['palette']))
        self.split, self.setting, self.mode = split, setting, mode
        self.steps = parse_split(split, len(names) - 1)
        self.step = check_step(split, self.steps, step)
        self.ignore_index = ignore_index
        seen = [c for s in self.steps[: step + 1] for c in s]
        self.allowed = set(self.steps[step] if mode == 'train' else seen)
        self.label_map = self._label_map(seen, len(names) - 1)
        self.indices = self._select(seen, index_file)
        self._metainfo = self._make_metainfo(meta, names, seen)

    def _label_map(self, seen: List[int], num_classes: int) -> Dict[int, int]:
        """Dataset id -> model id, for the ids that change (module docstring)."""
        position = {cls: index + 1 for index, cls in enumerate(seen)}
        mapping = {}
        for cls in range(1, num_classes + 1):
            target = position[cls] if cls in self.allowed else 0
            if target != cls:
                mapping[cls] = target
        return mapping

    def _present_labels(self, index_file: Optional[str]) -> List[List[int]]:
        """Labels present in each label map of the wrapped dataset."""
        cache = {}
        if index_file and osp.isfile(index_file):
            with open(index_file) as f:
                cache = json.load(f)
        labels, changed = [], False
        for index in range(len(self.dataset)):
            path = self.dataset.get_data_info(index)['seg_map_path']
            if path not in cache:
                cache[path] = image_labels(path)
                changed = True
            labels.append(cache[path])
        if index_file and changed:
            with open(index_file, 'w') as f:
                json.dump(cache, f)
        return labels

    def _select(self, seen: List[int], index_file: Optional[str]) -> List[int]:
        """Indices of the wrapped dataset's images that this step serves."""
        allowed_all = set(seen) | {0, self.ignore_index}
        keep = []
        for index, labels in enumerate(self._present_labels(index_file)):
            if not self.allowed.intersection(labels):
                continue
            if (
                self.mode == 'train'
                and self.setting == 'disjoint'
                and not allowed_all.issuperset(labels)
            ):
                continue
            keep.append(index)
        if not keep:
            raise ValueError(
                f'Step {self.step} of split {self.split!r} ({self.mode}, '
                f'{self.setting}) selects no image of '
                f'{type(self.dataset).__name__}: none holds a class of '
                f'{sorted(self.allowed)}.'
            )
        return keep

    def _make_metainfo(self, meta: dict, names: List[str], seen: List[int]) -> dict:
        metainfo = copy.deepcopy(dict(meta))
        metainfo['classes'] = tuple([names[0]] + [names[c] for c in seen])
        if meta.get('palette'):
            palette = list(meta['palette'])
            metainfo['palette'] = [palette[0]] + [palette[c] for c in seen]
        class_steps, start = [], 1
        for step_classes in self.steps[: self.step + 1]:
            class_steps.append(list(range(start, start + len(step_classes))))
            start += len(step_classes)
        metainfo.update(
            split=self.split,
            step=self.step,
            setting=self.setting,
            class_steps=class_steps,
            dataset_class_steps=[list(s) for s in self.steps],
        )
        return metainfo

    @property
    def metainfo(self) -> dict:
        """Meta of the step (module docstring)."""
        return copy.deepcopy(self._metainfo)

    def __len__(self) -> int:
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's info of the ``idx``-th image of the step,
        with the step's ``label_map``."""
        info = self.dataset.get_data_info(self.indices[idx])
        info['label_map'] = dict(self.label_map) or None
        return info

    def __getitem__(self, idx: int) -> dict:
        return self.dataset.pipeline(self.get_data_info(idx))
