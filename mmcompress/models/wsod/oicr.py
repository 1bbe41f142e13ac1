"""OICR weakly supervised detector on mmdet, with CASD self-distillation.

The detector trains from image-level labels only (``gt_instances.labels``,
no boxes) and proposals given with every image (``data_sample.proposals``,
e.g. from :class:`~mmcompress.models.wsod.proposals.WSODProposals`). Backbone
and RoI extractor are mmdet components built from the config; the MIDN and the
refinement streams are :class:`~mmcompress.models.wsod.oicr_head.OICRHead`.

Every training image is seen in the views ``view_scales`` x {original,
h-flip if ``view_flip``} (CASD's code: 2 scales x 2 flips), with the same
proposals mapped into each view; the OICR losses are averaged over the views.
With ``casd_iw`` / ``casd_lw`` set, the CASD losses are added on the RoI
features of the views (input-wise) and on the backbone levels ``lw_levels``
of the views (layer-wise): ``L = L_OICR + L_IW + L_LW`` (weights inside the
loss configs).
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.models.layers import multiclass_nms
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures.bbox import bbox2roi
from mmengine.structures import InstanceData
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

BOX_LABEL_MESSAGE = (
    '{name} is weakly supervised but sample {index} of the training batch '
    'holds box labels (gt_instances.bboxes, {count} boxes); add '
    "dict(type='ImageLevelLabels') after LoadAnnotations in the training "
    'pipeline so that only the image-level labels reach the model'
)


def flip_boxes(boxes: Tensor, width: float) -> Tensor:
    """Boxes ``x1, y1, x2, y2`` of an image of ``width`` flipped horizontally."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def image_level_labels(batch_data_samples, name: str) -> List[Tensor]:
    """Classes present in each sample of a training batch (no boxes allowed).

    Args:
        batch_data_samples (list[DetDataSample]): With image-level
            ``gt_instances.labels``.
        name (str): The model's name, for the error.

    Returns:
        list[Tensor]: Sorted unique classes per sample.
    """
    labels = []
    for index, sample in enumerate(batch_data_samples):
        gt = sample.gt_instances
        if 'bboxes' in gt and len(gt.bboxes):
            raise ValueError(
                BOX_LABEL_MESSAGE.format(name=name, index=index, count=len(gt.bboxes))
            )
        labels.append(gt.labels.unique())
    return labels


@MODELS.register_module()
class OICR(BaseDetector):
    """OICR (MIDN + refinement streams) with optional CASD-IW / CASD-LW.

    Args:
        backbone (dict): mmdet backbone config (returns a tuple of levels).
        roi_extractor (dict): mmdet RoI extractor config (one level).
        head (dict): :class:`OICRHead` config.
        roi_level (int): Backbone level the RoI extractor reads. Defaults to
            -1 (the last).
        view_scales (Sequence[float]): Scales of the training views. Defaults
            to (1.0,).
        view_flip (bool): Add the h-flipped view of every scale. Defaults to
            False.
        casd_iw (dict, optional): :class:`CASDInputWiseLoss` config.
        casd_lw (dict, optional): :class:`CASDLayerWiseLoss` config.
        lw_levels (Sequence[int]): Backbone levels of CASD-LW. Defaults to
            (-1,).
        train_proposals (int, optional): Proposals drawn at random (without
            replacement, the same in every view) per image and training
            iteration, as the official code samples its proposals; None keeps
            all. Defaults to None.
        test_cfg (dict, optional): ``score_thr`` (default 1e-4), ``nms``
            (default ``dict(type='nms', iou_threshold=0.3)``, OICR's) and
            ``max_per_img`` (default 100).
        train_cfg (dict, optional): Unused (mmdet's detector signature).
        data_preprocessor (dict, optional): mmdet data preprocessor config.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        backbone: dict,
        roi_extractor: dict,
        head: dict,
        roi_level: int = -1,
        view_scales: Sequence[float] = (1.0,),
        view_flip: bool = False,
        casd_iw: Optional[dict] = None,
        casd_lw: Optional[dict] = None,
        lw_levels: Sequence[int] = (-1,),
        train_proposals: Optional[int] = None,
        test_cfg: Optional[dict] = None,
        train_cfg: Optional[dict] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MMDET_MODELS.build(backbone)
        self.roi_extractor = MMDET_MODELS.build(roi_extractor)
        self.head = MMDET_MODELS.build(head)
        self.roi_level = int(roi_level)
        scales = [
            check_number('view_scales', s, low=0, low_open=True) for s in view_scales
        ]
        self.views = [
            (s, f) for s in scales for f in ((False, True) if view_flip else (False,))
        ]
        flips = [f for _, f in self.views]
        self.casd_iw = self.casd_lw = None
        if casd_iw or casd_lw:
            if len(self.views) < 2:
                raise ValueError(
                    'CASD distils across views but the detector has one view '
                    f'(view_scales={list(view_scales)}, view_flip={view_flip}); '
                    'set view_flip=True and/or two view_scales'
                )
            if casd_iw:
                self.casd_iw = MMDET_MODELS.build(dict(dict(flipped=flips), **casd_iw))
            if casd_lw:
                self.casd_lw = MMDET_MODELS.build(dict(dict(flipped=flips), **casd_lw))
        self.lw_levels = [int(level) for level in lw_levels]
        self.train_proposals = (
            None
            if train_proposals is None
            else int(check_number('train_proposals', train_proposals, low=1))
        )
        self.test_settings = dict(
            score_thr=1e-4, nms=dict(type='nms', iou_threshold=0.3), max_per_img=100
        )
        self.test_settings.update(test_cfg or {})

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone levels of a batch."""
        return tuple(self.backbone(batch_inputs))

    def weak_targets(self, batch_data_samples) -> Tuple[List[Tensor], List[Tensor]]:
        """Proposals and image-level labels of a batch, checked."""
        labels = image_level_labels(batch_data_samples, type(self).__name__)
        proposals = []
        for index, sample in enumerate(batch_data_samples):
            boxes = self.sample_proposals(sample, index)
            if self.train_proposals is not None and len(boxes) > self.train_proposals:
                keep = torch.randperm(len(boxes), device=boxes.device)
                boxes = boxes[keep[: self.train_proposals]]
            proposals.append(boxes)
        return proposals, labels

    def sample_proposals(self, sample, index: int) -> Tensor:
        """The (R, 4) proposals of one data sample; an error if it has none."""
        boxes = sample.proposals.bboxes if 'proposals' in sample else None
        if boxes is None or len(boxes) == 0:
            raise ValueError(
                f'{type(self).__name__} needs proposals with every image, but '
                f'sample {index} ({sample.metainfo.get("img_path", "?")}) has '
                f'{"none" if boxes is None else "an empty set"}; add '
                "dict(type='WSODProposals') before PackDetInputs in the pipeline"
            )
        return boxes.float()

    def view(
        self, batch_inputs: Tensor, proposals: List[Tensor], scale: float, flip: bool
    ) -> Tuple[Tensor, List[Tensor]]:
        """The batch and its proposals at ``scale``, h-flipped if ``flip``."""
        boxes = proposals
        if scale != 1:
            height, width = batch_inputs.shape[-2:]
            batch_inputs = F.interpolate(
                batch_inputs, scale_factor=scale, mode='bilinear', align_corners=False
            )
            factor = batch_inputs.new_tensor(
                [
                    batch_inputs.shape[-1] / width,
                    batch_inputs.shape[-2] / height,
                ]
            ).repeat(2)
            boxes = [b * factor for b in boxes]
        if flip:
            batch_inputs = batch_inputs.flip(-1)
            boxes = [flip_boxes(b, batch_inputs.shape[-1]) for b in boxes]
        return batch_inputs, boxes

    def rois(self, feats: Tuple[Tensor, ...], boxes: List[Tensor]) -> Tensor:
        """(sum R_i, C, s, s) RoI features of ``boxes`` on the RoI level."""
        level = feats[self.roi_level]
        return self.roi_extractor((level,), bbox2roi(boxes))

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        """OICR losses averaged over the views, plus the CASD terms.

        Args:
            batch_inputs (Tensor): (N, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): With ``proposals`` and
                image-level ``gt_instances.labels`` (no boxes).

        Returns:
            dict: ``loss_midn``, ``loss_refine<k>`` and, when configured,
            ``loss_casd_iw`` / ``loss_casd_lw``.
        """
        proposals, labels = self.weak_targets(batch_data_samples)
        counts = [len(p) for p in proposals]
        losses, roi_feats, feats = {}, [], []
        for scale, flip in self.views:
            inputs, boxes = self.view(batch_inputs, proposals, scale, flip)
            feats.append(self.extract_feat(inputs))
            roi_feats.append(self.rois(feats[-1], boxes))
            midn, refine = self.head(roi_feats[-1], counts)
            for key, value in self.head.loss(midn, refine, boxes, labels).items():
                losses[key] = losses.get(key, 0) + value / len(self.views)
        if self.casd_iw is not None:
            losses['loss_casd_iw'] = self.casd_iw(*roi_feats)
        if self.casd_lw is not None:
            losses['loss_casd_lw'] = sum(
                self.casd_lw(*[f[level] for f in feats]) for level in self.lw_levels
            )
        return losses

    def test_scores(
        self, batch_inputs: Tensor, proposals: List[Tensor]
    ) -> Tuple[List[Tensor], Tensor]:
        """Test scores of the proposals and of the images.

        Returns:
            tuple: per image (R_i, C + 1) proposal scores (mean of the
            refinement streams) and the (N, C) MIDN image scores.
        """
        feats = self.extract_feat(batch_inputs)
        midn, refine = self.head(
            self.rois(feats, proposals), [len(p) for p in proposals]
        )
        return self.head.test_scores(refine), self.head.image_scores(midn)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        """Boxes, scores and labels per image (class-wise NMS of the proposals).

        Args:
            batch_inputs (Tensor): (N, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): With ``proposals``.
            rescale (bool): Map the boxes back to the original image size.
                Defaults to True.

        Returns:
            list[DetDataSample]: With ``pred_instances`` and
            ``pred_image_scores`` (the (C,) MIDN image scores).
        """
        proposals = [
            self.sample_proposals(s, i) for i, s in enumerate(batch_data_samples)
        ]
        scores, image_scores = self.test_scores(batch_inputs, proposals)
        cfg = self.test_settings
        for sample, boxes, score, image_score in zip(
            batch_data_samples, proposals, scores, image_scores
        ):
            sample.pred_image_scores = image_score
            if rescale and 'scale_factor' in sample.metainfo:
                boxes = boxes / boxes.new_tensor(sample.scale_factor).repeat(2)
            dets, det_labels = multiclass_nms(
                boxes, score, cfg['score_thr'], cfg['nms'], cfg['max_per_img']
            )
            sample.pred_instances = InstanceData(
                bboxes=dets[:, :4], scores=dets[:, 4], labels=det_labels
            )
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Test scores of the proposals (``mode='tensor'``)."""
        proposals = [
            self.sample_proposals(s, i) for i, s in enumerate(batch_data_samples)
        ]
        return self.test_scores(batch_inputs, proposals)[0]
