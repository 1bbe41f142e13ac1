"""Regenerate BiSMAP target pseudo-labels (and target prototypes) during training.

:class:`PseudoLabelHook` runs before training (with the weights of
``load_from``: the source or warm-up model) and then every ``interval``
iterations. Each time it

1. collects decoder features of correctly predicted source pixels, per class,
   subsampled by ``class_ratios`` (``ClassFeatureBank``);
2. fits the class models of ``method``: ``'gmm'`` (K diagonal components by EM,
   official), ``'prototype'`` (one isotropic mean per class, K=1) or
   ``'softmax'`` (no model: the segmentor's own probabilities);
3. scores every target image pixel by pixel (decoder features upsampled to the
   image size, as official), keeps pixels whose best score reaches
   ``threshold`` (official GMM: log-likelihood 100) or, with ``coverage``, the
   best-scoring share of all target pixels, and writes the label maps as PNG
   (255 = ignore) into the target dataset's ``pseudo_label_dir``;
4. fits ``num_prototypes`` k-means target prototypes for the source
   transferability weights of ``BiSMAPSegmentor``.

The target images are those of the ``UnlabeledTargetDataset`` inside the
training ``UDAPairDataset``; the target's true labels are never read.
All ranks compute the same labels from the full data; rank 0 writes them.
"""

import os
import os.path as osp
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader, Dataset

from mmcompress.registry import DATASETS, HOOKS

from .datasets import UDAPairDataset, pseudo_label_name, write_marker
from .gmm import fit_class_gmms
from .pseudo_label import (
    ClassFeatureBank,
    class_means,
    prototype_scores,
    threshold_at_coverage,
)
from .segmentor import decode_with_features

METHODS = ('gmm', 'prototype', 'softmax')


class _ImageList(Dataset):
    """Images from paths through a pipeline (no annotations)."""

    def __init__(self, paths: Sequence[str], pipeline: list) -> None:
        self.paths, self.pipeline = list(paths), Compose(pipeline)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict:
        return self.pipeline(dict(img_path=self.paths[idx], seg_fields=[]))


@HOOKS.register_module()
class PseudoLabelHook(Hook):
    """Write target pseudo-labels before training and every ``interval`` iters.

    Args:
        source (dict): Config of the labelled source dataset with a test
            pipeline that loads annotations.
        target_pipeline (list): Test pipeline of the target images (load, pack).
        method (str): ``'gmm'``, ``'prototype'`` or ``'softmax'``.
        num_components (int): GMM components per class. Defaults to 8.
        threshold (float, optional): Absolute score threshold (official GMM: 100).
        coverage (float, optional): Keep this share of the target pixels instead.
            Exactly one of ``threshold`` / ``coverage`` (or neither: keep all).
        class_ratios (Sequence[float], optional): Per-class source sampling.
        max_per_class (int): Source features kept per class. Defaults to 300000.
        num_prototypes (int): Target k-means prototypes; 0 skips them.
            Defaults to 40.
        max_target_features (int): Target features for the prototypes.
            Defaults to 1000000.
        interval (int, optional): Regenerate every ``interval`` iterations; None:
            only before training.
        batch_size (int): Images per forward pass. Defaults to 4.
        gmm_cfg (dict, optional): More ``fit_class_gmms`` arguments (``tol``,
            ``max_iters``...).
        seed (int): Seed of the sampling and k-means. Defaults to 0.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        source: dict,
        target_pipeline: list,
        method: str = 'gmm',
        num_components: int = 8,
        threshold: Optional[float] = None,
        coverage: Optional[float] = None,
        class_ratios: Optional[Sequence[float]] = None,
        max_per_class: int = 300000,
        num_prototypes: int = 40,
        max_target_features: int = 1000000,
        interval: Optional[int] = None,
        batch_size: int = 4,
        gmm_cfg: Optional[dict] = None,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f'method must be one of {METHODS}, got {method!r}.')
        if threshold is not None and coverage is not None:
            raise ValueError('give threshold or coverage, not both.')
        self.source, self.target_pipeline = source, target_pipeline
        self.method, self.num_components = method, num_components
        self.threshold, self.coverage = threshold, coverage
        self.class_ratios, self.max_per_class = class_ratios, max_per_class
        self.num_prototypes = num_prototypes
        self.max_target_features = max_target_features
        self.interval, self.batch_size = interval, batch_size
        self.gmm_cfg, self.seed = dict(gmm_cfg or {}), seed

    def before_train(self, runner) -> None:
        """Pseudo-labels from the starting weights."""
        self.generate(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        """Regenerate every ``interval`` iterations (not after the last one)."""
        if self.interval and self.every_n_train_iters(runner, self.interval):
            if runner.iter + 1 < runner.max_iters:
                self.generate(runner, runner.iter + 1)

    def _loader(self, dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=pseudo_collate,
        )

    @torch.no_grad()
    def generate(self, runner, iteration: int) -> None:
        """Fit the class models and write the pseudo-labels of every target image.

        Args:
            runner (Runner): The runner.
            iteration (int): Training iterations done (recorded in the marker).
        """
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pair = runner.train_dataloader.dataset
        if not isinstance(pair, UDAPairDataset):
            raise TypeError(
                'PseudoLabelHook needs train_dataloader.dataset to be a '
                f'UDAPairDataset, got {type(pair).__name__}.'
            )
        target = pair.target
        was_training = model.training
        model.eval()
        class_model = self._fit(model)
        paths = [target.get_data_info(i)['img_path'] for i in range(len(target))]
        labels, feats = self._label_target(model, class_model, paths)
        if self.num_prototypes and getattr(model, 'transfer', None) is not None:
            model.transfer.fit_prototypes(feats, self.num_prototypes, self.seed)
        if is_main_process():
            os.makedirs(target.pseudo_label_dir, exist_ok=True)
            for path, label in zip(paths, labels):
                out = osp.join(target.pseudo_label_dir, pseudo_label_name(path))
                mmcv.imwrite(label, out)
            coverage = float(np.mean([(lb != 255).mean() for lb in labels]))
            write_marker(
                target.pseudo_label_dir,
                dict(method=self.method, iteration=iteration, coverage=coverage),
            )
            runner.logger.info(
                f'PseudoLabelHook: {len(labels)} {self.method} pseudo-labels at iter '
                f'{iteration}, coverage {100 * coverage:.1f}%'
            )
        barrier()
        model.train(was_training)

    def _forward(self, model, batch):
        data = model.data_preprocessor(batch, False)
        x = model.extract_feat(data['inputs'])
        logits, feats = decode_with_features(model.decode_head, x)
        return data['data_samples'], logits, feats, data['inputs'].shape[2:]

    def _fit(self, model):
        """Source features per class -> GMMs, class means or nothing."""
        if self.method == 'softmax':
            return None
        source = DATASETS.build(self.source)
        bank = ClassFeatureBank(
            model.num_classes, self.class_ratios, self.max_per_class, self.seed
        )
        for batch in self._loader(source):
            samples, logits, feats, _ = self._forward(model, batch)
            size = feats.shape[2:]
            gt = torch.stack([s.gt_sem_seg.data for s in samples]).float()
            gt = F.interpolate(gt, size, mode='nearest').flatten().long()
            pred = logits.argmax(1).flatten()
            flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
            bank.push(flat, gt, pred)
        features = bank.features()
        if self.method == 'prototype':
            return class_means(features)
        return fit_class_gmms(
            features, self.num_components, seed=self.seed, **self.gmm_cfg
        )

    def _scores(self, class_model, logits, feats, size):
        if self.method == 'softmax':
            up = F.interpolate(logits, size, mode='bilinear', align_corners=False)
            return up.softmax(1).permute(0, 2, 3, 1).reshape(-1, up.shape[1])
        up = F.interpolate(feats, size, mode='bilinear', align_corners=True)
        flat = up.permute(0, 2, 3, 1).reshape(-1, up.shape[1])
        if self.method == 'prototype':
            return prototype_scores(flat, class_model.to(flat.device))
        return class_model.to(flat.device).log_likelihood(flat)

    def _label_target(self, model, class_model, paths):
        """Best class and score per pixel, thresholded; target feature sample."""
        per_image = max(1, self.max_target_features // max(len(paths), 1))
        gen = torch.Generator().manual_seed(self.seed)
        results, sample = [], []
        for batch in self._loader(_ImageList(paths, self.target_pipeline)):
            samples, logits, feats, size = self._forward(model, batch)
            flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu()
            pick = torch.randperm(len(flat), generator=gen)[: per_image * len(samples)]
            sample.append(flat[pick])
            best, label = self._scores(class_model, logits, feats, size).max(1)
            best = best.view(len(samples), *size).cpu()
            label = label.view(len(samples), *size).cpu()
            for i, s in enumerate(samples):
                h, w = s.metainfo['img_shape'][:2]
                results.append(
                    (label[i, :h, :w], best[i, :h, :w], s.metainfo['ori_shape'])
                )
        labels = self._threshold(results)
        return labels, torch.cat(sample)

    def _threshold(self, results):
        threshold = self.threshold
        if self.coverage is not None:
            best = torch.cat([b.flatten() for _, b, _ in results])
            threshold = threshold_at_coverage(best, self.coverage)
        out = []
        for label, best, ori in results:
            if threshold is not None:
                label = torch.where(best >= threshold, label, 255)
            lab = label.to(torch.uint8).numpy()
            if lab.shape != tuple(ori[:2]):
                lab = mmcv.imresize(lab, (ori[1], ori[0]), interpolation='nearest')
            out.append(lab)
        return out
