"""OICR head (Tang et al., CVPR 2017): a WSDDN-style multiple-instance
detection network (MIDN) plus ``K`` online instance classifier refinement
streams on the RoI features of given proposals.

* MIDN: two fc layers on the RoI features, then a classification stream
  (softmax over classes) and a detection stream (softmax over the proposals of
  an image); proposal scores are their product and the image score of class
  ``c`` is their sum over proposals, trained with the multi-label cross
  entropy against the image-level labels (OICR's image loss; scores clamped to
  [1e-6, 1 - 1e-6]).
* Refinement stream ``k`` (C + 1 classes, background last as in mmdet) is
  supervised by pseudo-labels from the scores of stream ``k - 1`` (stream 0 =
  MIDN), as OICR's ``_get_highest_score_proposals`` / ``_sample_rois``: per
  class present in the image the top-scoring proposal is the seed; every
  proposal takes the class of the seed it overlaps most if that IoU >= 0.5,
  else background, and is weighted by that seed's score; the loss is the
  weighted cross entropy averaged over proposals.
* Test: the mean of the refinement streams' probabilities (OICR's test output).

Option ``cell_streams``: the MIDN classification and/or detection stream is a
linear layer applied at every cell of the RoI features and pooled over the
RoI's cells (:func:`spatial_pool`), the head of a max / log-sum-exp pooled
:class:`~mmcompress.models.wsod.classifier.WSODImageClassifier` applied to the
RoI, so that ``cell_init`` can start it from such a classifier's linear layer.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_overlaps
from mmengine.model import BaseModule
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number
from mmcompress.utils.safe_load import safe_torch_load

EPS = 1e-6
POOLS = ('avg', 'max', 'lse')
CELL_STREAMS = ('cls', 'det')


def spatial_pool(maps: Tensor, pool: str, lse_r: float = 5.0) -> Tensor:
    """(N, C, H, W) maps -> (N, C) by a pooling over space.

    Args:
        maps (Tensor): (N, C, H, W) maps.
        pool (str): ``'avg'`` (mean), ``'max'`` or ``'lse'``: log-sum-exp
            ``log(mean(exp(r * x))) / r`` (the mean at ``r -> 0``, the maximum
            at ``r -> inf``).
        lse_r (float): ``r`` of ``'lse'``. Defaults to 5.

    Returns:
        Tensor: (N, C) pooled values.
    """
    flat = maps.flatten(2)
    if pool == 'avg':
        return flat.mean(2)
    if pool == 'max':
        return flat.amax(2)
    if pool == 'lse':
        return (torch.logsumexp(lse_r * flat, 2) - math.log(flat.shape[2])) / lse_r
    raise ValueError(f'pool must be one of {POOLS}, got {pool!r}')


def oicr_pseudo_labels(
    boxes: Tensor, scores: Tensor, image_labels: Tensor, iou_thr: float = 0.5
) -> Tuple[Tensor, Tensor]:
    """OICR's pseudo-labels of one image.

    Args:
        boxes (Tensor): (R, 4) proposals.
        scores (Tensor): (R, C) foreground scores of the previous stream.
        image_labels (Tensor): (L,) classes present in the image.
        iou_thr (float): Least IoU with a seed to take its class. Defaults to
            0.5 (OICR's ``FG_THRESH``).

    Returns:
        tuple[Tensor, Tensor]: (R,) labels in ``[0, C]`` (``C`` background)
        and (R,) loss weights (the assigned seed's score), without gradient.
    """
    scores = scores.detach()
    num_rois, num_classes = scores.shape
    if image_labels.numel() == 0:
        return (
            boxes.new_full((num_rois,), num_classes, dtype=torch.long),
            boxes.new_zeros(num_rois),
        )
    image_labels = image_labels.long()
    seeds = scores[:, image_labels].argmax(0)
    seed_scores = scores[seeds, image_labels]
    overlaps = bbox_overlaps(boxes, boxes[seeds])
    max_iou, assigned = overlaps.max(1)
    labels = image_labels[assigned].clone()
    labels[max_iou < iou_thr] = num_classes
    return labels, seed_scores[assigned]


def multi_hot(image_labels: List[Tensor], num_classes: int, like: Tensor) -> Tensor:
    """(N, C) 0/1 image-level targets.

    Args:
        image_labels (list[Tensor]): Classes present in each image.
        num_classes (int): C.
        like (Tensor): Gives the dtype and device.

    Returns:
        Tensor: 1 where the image holds the class.
    """
    targets = like.new_zeros(len(image_labels), num_classes)
    for row, labels in zip(targets, image_labels):
        row[labels.long()] = 1
    return targets


@MODELS.register_module()
class OICRHead(BaseModule):
    """MIDN + refinement streams on (R, C, s, s) RoI features.

    Args:
        in_channels (int): Channels of the RoI features.
        roi_size (int): Side of the RoI features. Defaults to 7.
        fc_channels (int): Width of the two shared fc layers. Defaults to 256.
        num_classes (int): Foreground classes. Defaults to 10.
        num_refine (int): Refinement streams ``K`` (OICR: 3; CASD's code:
            2). Defaults to 2.
        iou_thr (float): Pseudo-label IoU threshold. Defaults to 0.5.
        midn_loss_weight (float): Weight of the image loss. Defaults to 1.
        refine_loss_weight (float): Weight of each refinement loss. Defaults
            to 1.
        cell_streams (Sequence[str]): MIDN streams (``'cls'``, ``'det'``)
            whose logits are a linear layer (``in_channels`` -> classes) at
            every cell of the RoI features, pooled over the cells by
            ``cell_pool``, instead of a linear layer on the fc features.
            Defaults to () (both on the fc features).
        cell_pool (str): Pooling of the cell streams over the RoI's cells
            (:func:`spatial_pool`). Defaults to ``'lse'``.
        lse_r (float): ``r`` of the log-sum-exp pooling. Defaults to 5.
        cell_init (str, optional): Checkpoint of a
            :class:`~mmcompress.models.wsod.classifier.WSODImageClassifier`
            (its ``fc.weight`` / ``fc.bias``) that :meth:`init_weights` copies
            into every cell stream. Defaults to None.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        in_channels: int,
        roi_size: int = 7,
        fc_channels: int = 256,
        num_classes: int = 10,
        num_refine: int = 2,
        iou_thr: float = 0.5,
        midn_loss_weight: float = 1.0,
        refine_loss_weight: float = 1.0,
        cell_streams: Sequence[str] = (),
        cell_pool: str = 'lse',
        lse_r: float = 5.0,
        cell_init: Optional[str] = None,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg)
        self.num_classes = int(check_number('num_classes', num_classes, low=1))
        self.num_refine = int(check_number('num_refine', num_refine, low=1))
        self.iou_thr = check_number('iou_thr', iou_thr, low=0, high=1)
        self.midn_loss_weight = check_number(
            'midn_loss_weight', midn_loss_weight, low=0
        )
        self.refine_loss_weight = check_number(
            'refine_loss_weight', refine_loss_weight, low=0
        )
        self.fcs = nn.Sequential(
            nn.Linear(in_channels * roi_size * roi_size, fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(fc_channels, fc_channels),
            nn.ReLU(inplace=True),
        )
        self.cell_streams = tuple(cell_streams)
        unknown = [s for s in self.cell_streams if s not in CELL_STREAMS]
        if unknown:
            raise ValueError(
                f'OICRHead cell_streams must be a subset of {CELL_STREAMS}, got '
                f'{list(cell_streams)}'
            )
        if cell_pool not in POOLS:
            raise ValueError(
                f'OICRHead cell_pool must be one of {POOLS}, got {cell_pool!r}'
            )
        if cell_init is not None and not self.cell_streams:
            raise ValueError(
                f'OICRHead cell_init={cell_init!r} initialises the cell streams '
                "but cell_streams is empty; set cell_streams=('cls',) and/or 'det'"
            )
        self.cell_pool = cell_pool
        self.lse_r = check_number('lse_r', lse_r, low=0, low_open=True)
        self.cell_init = cell_init
        self.midn_cls, self.midn_det = (
            nn.Linear(
                in_channels if name in self.cell_streams else fc_channels,
                num_classes,
            )
            for name in CELL_STREAMS
        )
        self.refine = nn.ModuleList(
            nn.Linear(fc_channels, num_classes + 1) for _ in range(self.num_refine)
        )

    def forward(
        self, roi_feats: Tensor, counts: Sequence[int]
    ) -> Tuple[List[Tensor], List[List[Tensor]]]:
        """Scores of the proposals of each image.

        Args:
            roi_feats (Tensor): (sum(counts), C, s, s) RoI features, images
                one after the other.
            counts (Sequence[int]): Proposals per image.

        Returns:
            tuple: ``midn``: per image (R_i, C) MIDN proposal scores;
            ``refine``: per stream, per image (R_i, C + 1) probabilities.
        """
        x = self.fcs(roi_feats.flatten(1))
        cls, det = (
            self.stream_logits(name, roi_feats, x).split(list(counts))
            for name in CELL_STREAMS
        )
        midn = [c.softmax(1) * d.softmax(0) for c, d in zip(cls, det)]
        refine = [list(fc(x).softmax(1).split(list(counts))) for fc in self.refine]
        return midn, refine

    def stream_logits(self, name: str, roi_feats: Tensor, x: Tensor) -> Tensor:
        """(R, C) logits of the MIDN stream ``name`` (``'cls'`` / ``'det'``):
        its linear layer on the fc features ``x``, or for a cell stream at
        every cell of ``roi_feats``, pooled over the cells."""
        linear = getattr(self, f'midn_{name}')
        if name not in self.cell_streams:
            return linear(x)
        maps = F.conv2d(roi_feats, linear.weight[:, :, None, None], linear.bias)
        return spatial_pool(maps, self.cell_pool, self.lse_r)

    def init_weights(self) -> None:
        """The configured initialisation, then the cell streams from
        ``cell_init``'s ``fc.weight`` / ``fc.bias`` if given."""
        super().init_weights()
        if self.cell_init is None:
            return
        state = safe_torch_load(self.cell_init, map_location='cpu')
        state = state.get('state_dict', state)
        for name in self.cell_streams:
            linear = getattr(self, f'midn_{name}')
            for key in ('weight', 'bias'):
                value = state.get(f'fc.{key}')
                target = getattr(linear, key)
                if value is None or value.shape != target.shape:
                    raise ValueError(
                        f'OICRHead cell_init {self.cell_init} has fc.{key} of '
                        f'shape {None if value is None else tuple(value.shape)}, '
                        f'the cell stream {name!r} needs {tuple(target.shape)}: '
                        'give a WSODImageClassifier checkpoint on the RoI level '
                        'with the same classes'
                    )
                with torch.no_grad():
                    target.copy_(value)

    def loss(
        self,
        midn: List[Tensor],
        refine: List[List[Tensor]],
        proposals: List[Tensor],
        image_labels: List[Tensor],
    ) -> dict:
        """Image loss of the MIDN and weighted CE of every refinement stream.

        Args:
            midn, refine: Outputs of :meth:`forward`.
            proposals (list[Tensor]): (R_i, 4) boxes per image.
            image_labels (list[Tensor]): Classes present per image.

        Returns:
            dict: ``loss_midn`` and ``loss_refine<k>`` (k from 1).
        """
        targets = multi_hot(image_labels, self.num_classes, midn[0])
        image_scores = self.image_scores(midn)
        loss_midn = F.binary_cross_entropy(image_scores, targets, reduction='none')
        losses = dict(loss_midn=self.midn_loss_weight * loss_midn.sum(1).mean())
        previous = midn
        for k, stream in enumerate(refine, 1):
            per_image = []
            for boxes, prev, probs, labels in zip(
                proposals, previous, stream, image_labels
            ):
                pseudo, weights = oicr_pseudo_labels(
                    boxes, prev[:, : self.num_classes], labels, self.iou_thr
                )
                picked = probs.gather(1, pseudo[:, None])[:, 0]
                per_image.append(-(weights * picked.clamp_min(EPS).log()).mean())
            losses[f'loss_refine{k}'] = (
                self.refine_loss_weight * torch.stack(per_image).mean()
            )
            previous = stream
        return losses

    @staticmethod
    def image_scores(midn: List[Tensor]) -> Tensor:
        """(N, C) image scores: MIDN proposal scores summed per image, clamped
        to [1e-6, 1 - 1e-6]."""
        return torch.stack([m.sum(0) for m in midn]).clamp(EPS, 1 - EPS)

    @staticmethod
    def test_scores(refine: List[List[Tensor]]) -> List[Tensor]:
        """Per image (R_i, C + 1): mean of the refinement streams."""
        return [torch.stack(per).mean(0) for per in zip(*refine)]
