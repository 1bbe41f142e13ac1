"""Distillation of dense (one-stage) mmdet detectors on their head outputs:
BCKD (Yang et al., ICCV 2023) and the LD-style softmax-KL classification KD,
for GFL, RetinaNet, ATSS and FCOS students (and any other mmdet ``AnchorHead``
with a box coder).

Used as the loss of a :class:`~mmcompress.distill.DistillModel` entry that
records ``bbox_head`` of student and teacher (the teacher then runs backbone,
neck and head forward only)::

    distill=dict(
        bckd=dict(student='bbox_head', teacher='bbox_head',
                  loss=dict(type='DenseHeadDistillLoss')))

The loss receives the recorded head outputs (per-level class scores, box
regressions, then any extra outputs such as FCOS/ATSS centerness, which are
not distilled), the data samples and both models. From the student's head it
takes the priors and the training targets (its own assigner: the positives
give the normaliser and the per-level "has positives" rule, the label weights
weight the anchors); each model decodes its own regression output with its own
rule (:func:`decode_dense_boxes`). Teacher and student must share the prior
layout (strides and anchors per location).

This module needs mmdet (imported by ``mmcompress.distill`` only when mmdet
is installed).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import AnchorHead, ATSSHead, FCOSHead, GFLHead
from mmdet.structures.bbox import distance2bbox
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import nn

from mmcompress.registry import MODELS

SUPPORTED_HEADS = (
    'GFLHead',
    'FCOSHead',
    'AnchorHead subclasses with a bbox_coder (RetinaHead, ATSSHead, ...)',
)


def _head_of(model: nn.Module, role: str) -> nn.Module:
    """The dense head of a one-stage detector, checked to be supported."""
    head = getattr(model, 'bbox_head', None)
    if head is None:
        raise TypeError(
            f'DenseHeadDistillLoss: the {role} '
            f'({type(model).__name__}) has no `bbox_head`; a '
            'one-stage mmdet detector is needed.'
        )
    if not isinstance(head, (GFLHead, FCOSHead, AnchorHead)) or (
        isinstance(head, AnchorHead)
        and not isinstance(head, GFLHead)
        and not hasattr(head, 'bbox_coder')
    ):
        raise TypeError(
            f'DenseHeadDistillLoss: the {role} head '
            f'{type(head).__name__} is not supported; supported: '
            f'{SUPPORTED_HEADS}.'
        )
    if not getattr(head, 'use_sigmoid_cls', False):
        raise ValueError(
            f'DenseHeadDistillLoss: the {role} head '
            f'{type(head).__name__} has a softmax classifier; '
            'BCKD and the LD-style KD need sigmoid class '
            'scores (loss_cls with use_sigmoid=True).'
        )
    return head


def flatten_level(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, P*K, H, W) head output -> (N*H*W*P, K), in mmdet's prior order
    (image, row, column, prior)."""
    return tensor.permute(0, 2, 3, 1).reshape(-1, channels)


def decode_dense_boxes(
    head: nn.Module, priors: torch.Tensor, bbox_pred: torch.Tensor, stride: int
) -> torch.Tensor:
    """Decode one level's regression output of ``head`` into boxes.

    One rule per kind of head:

    * ``GFLHead``: the integral of each side's distribution, times the
      stride, as distances from the anchor centre (what GFL's predict does);
    * ``FCOSHead``: distances from the points; with ``norm_on_bbox`` a head in
      training mode outputs them in stride units (the head multiplies by the
      stride itself in eval mode), so they are scaled by the stride here;
    * other ``AnchorHead``\\ s (RetinaNet, ATSS...): the head's ``bbox_coder``
      applied to the anchors.

    Args:
        head (nn.Module): The dense head that produced ``bbox_pred``.
        priors (Tensor): Priors of the level repeated for the batch, (A, 4)
            anchors or (A, 2) points, in the order of :func:`flatten_level`.
        bbox_pred (Tensor): The level's regression output (N, P*R, H, W).
        stride (int): The level's stride (pixels).

    Returns:
        Tensor: Decoded boxes (A, 4) in (x1, y1, x2, y2) pixels.
    """
    if isinstance(head, GFLHead):
        distances = head.integral(flatten_level(bbox_pred, 4 * (head.reg_max + 1)))
        return distance2bbox(head.anchor_center(priors), distances * stride)
    deltas = flatten_level(bbox_pred, head.bbox_coder.encode_size)
    if isinstance(head, FCOSHead):
        if head.norm_on_bbox and head.training:
            deltas = deltas * stride
        return head.bbox_coder.decode(priors, deltas)
    return head.bbox_coder.decode(priors, deltas)


def _check_same_layout(head_S: nn.Module, head_T: nn.Module) -> None:
    gen_S, gen_T = head_S.prior_generator, head_T.prior_generator
    same = (
        type(gen_S) is type(gen_T)
        and list(gen_S.strides) == list(gen_T.strides)
        and list(gen_S.num_base_priors) == list(gen_T.num_base_priors)
    )
    if same and hasattr(gen_S, 'base_anchors'):
        same = all(
            torch.equal(a, b) for a, b in zip(gen_S.base_anchors, gen_T.base_anchors)
        )
    if not same:
        raise ValueError(
            'DenseHeadDistillLoss: student and teacher heads must share the '
            'prior layout (same prior generator, strides and anchors per '
            f'location); got student {type(gen_S).__name__} strides '
            f'{list(gen_S.strides)} priors/location '
            f'{list(gen_S.num_base_priors)} and teacher '
            f'{type(gen_T).__name__} strides {list(gen_T.strides)} '
            f'priors/location {list(gen_T.num_base_priors)}.'
        )
    if head_S.cls_out_channels != head_T.cls_out_channels:
        raise ValueError(
            f'DenseHeadDistillLoss: the student head has '
            f'{head_S.cls_out_channels} classes, the teacher '
            f'{head_T.cls_out_channels}; they must be equal.'
        )


def dense_targets(
    head: nn.Module,
    featmap_sizes: Sequence[Tuple[int, int]],
    data_samples: Sequence,
    device: torch.device,
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per-level labels and label weights of the head's own assignment.

    Samples without ``gt_instances`` (the build-time dry run of
    ``DistillModel``) count as images without objects.

    Args:
        head (nn.Module): The student's dense head (its train_cfg assigner).
        featmap_sizes (Sequence[tuple]): (H, W) per level.
        data_samples (Sequence): The batch's ``DetDataSample``\\ s.
        device (torch.device): Device of the head outputs.

    Returns:
        tuple[list[Tensor], list[Tensor]]: Labels (A_l,) (``num_classes`` is
        background) and label weights (A_l,) per level, A_l = N*H*W*P in the
        order of :func:`flatten_level`.
    """
    batch_img_metas = [s.metainfo for s in data_samples]
    batch_gt = []
    for sample in data_samples:
        if 'gt_instances' in sample:
            batch_gt.append(sample.gt_instances)
        else:
            batch_gt.append(
                InstanceData(
                    bboxes=torch.zeros((0, 4), device=device),
                    labels=torch.zeros((0,), dtype=torch.long, device=device),
                )
            )
    batch_ignore = [
        s.ignored_instances if 'ignored_instances' in s else None for s in data_samples
    ]
    with torch.no_grad():
        if isinstance(head, FCOSHead):
            points = head.prior_generator.grid_priors(
                featmap_sizes, dtype=torch.float32, device=device
            )
            labels, _ = head.get_targets(points, batch_gt)
            weights = [torch.ones_like(lv, dtype=torch.float) for lv in labels]
            return labels, weights
        anchors, valid_flags = head.get_anchors(
            featmap_sizes, batch_img_metas, device=device
        )
        out = head.get_targets(
            anchors, valid_flags, batch_gt, batch_img_metas, batch_ignore
        )
        # ATSS/GFL return the anchors first, AnchorHead does not
        labels, weights = (
            out[1:3] if isinstance(head, (ATSSHead, GFLHead)) else out[0:2]
        )
        return [lv.reshape(-1) for lv in labels], [
            w.reshape(-1).float() for w in weights
        ]


@MODELS.register_module()
class DenseHeadDistillLoss(nn.Module):
    """Head-output distillation of a dense detector (BCKD by default).

    For every FPN level, with s / t the student / teacher class logits
    (A, C), b_S / b_T the boxes each model decodes from its own regression
    output, w the student's label weights and ``avg_factor`` the number of
    positive anchors in the batch (averaged over GPUs, clamped to >= 1, as
    BCKD's ``num_total_samples``):

    * ``cls_loss(s, t, weight=w, avg_factor, num_level_positives)``
      (default :class:`BCKDClassificationLoss`, weight 1.0; or
      :class:`DenseSoftmaxKDLoss` for the LD-style softmax-KL baseline);
    * ``loc_loss(b_S, b_T, cls_scores_S=s, cls_scores_T=t, weight=w,
      avg_factor, num_level_positives)`` (default
      :class:`BCKDLocalizationLoss`, GIoU, weight 4.0; None to switch off).

    The quirks of the official code (level without positives gets no KD,
    modulation not detached, GIoU instead of the paper's IoU) are options of
    those two losses. Returns a dict ``{'cls': ..., 'loc': ...}`` (logged by
    ``DistillModel`` as ``loss_distill_<entry>_cls`` / ``_loc``).

    Args:
        cls_loss (dict, optional): Classification distillation loss config.
            Defaults to ``dict(type='BCKDClassificationLoss')``.
        loc_loss (dict, optional): Localisation distillation loss config.
            Defaults to ``dict(type='BCKDLocalizationLoss')``.
    """

    def __init__(
        self,
        # the defaults are never mutated: MODELS.build works on a copy
        cls_loss: Optional[dict] = dict(type='BCKDClassificationLoss'),  # noqa: B006
        loc_loss: Optional[dict] = dict(type='BCKDLocalizationLoss'),  # noqa: B006
    ) -> None:
        super().__init__()
        if cls_loss is None and loc_loss is None:
            raise ValueError(
                'DenseHeadDistillLoss needs cls_loss and/or loc_loss; both are None.'
            )
        self.cls_loss = MODELS.build(cls_loss) if cls_loss else None
        self.loc_loss = MODELS.build(loc_loss) if loc_loss else None

    def forward(
        self,
        preds_S: Sequence[torch.Tensor],
        preds_T: Sequence[torch.Tensor],
        data_samples: Sequence,
        student_model: nn.Module,
        teacher_model: nn.Module,
    ) -> Dict[str, torch.Tensor]:
        """Distillation losses of one batch.

        Args:
            preds_S (Sequence[Tensor]): The student head's outputs flattened
                level by level: L class-score maps, L regression maps, then
                any further outputs (ignored).
            preds_T (Sequence[Tensor]): The teacher head's outputs, same
                layout.
            data_samples (Sequence[DetDataSample]): The batch.
            student_model (nn.Module): The student detector.
            teacher_model (nn.Module): The teacher detector.

        Returns:
            dict[str, Tensor]: ``cls`` and/or ``loc`` losses, summed over
            levels.
        """
        head_S = _head_of(student_model, 'student')
        head_T = _head_of(teacher_model, 'teacher')
        _check_same_layout(head_S, head_T)
        strides = [s[0] for s in head_S.prior_generator.strides]
        num_levels = len(strides)
        for role, preds in (('student', preds_S), ('teacher', preds_T)):
            if len(preds) < 2 * num_levels:
                raise ValueError(
                    f'DenseHeadDistillLoss: the {role} record holds '
                    f'{len(preds)} tensors, expected >= {2 * num_levels} '
                    f'({num_levels} class-score and {num_levels} regression '
                    "maps); record the whole head: student='bbox_head'."
                )
        cls_S, reg_S = preds_S[:num_levels], preds_S[num_levels : 2 * num_levels]
        cls_T, reg_T = preds_T[:num_levels], preds_T[num_levels : 2 * num_levels]
        for level in range(num_levels):
            if cls_S[level].shape != cls_T[level].shape:
                raise ValueError(
                    f'DenseHeadDistillLoss: level {level} class scores of '
                    f'student {tuple(cls_S[level].shape)} and teacher '
                    f'{tuple(cls_T[level].shape)} differ.'
                )
        device = cls_S[0].device
        featmap_sizes = [c.shape[-2:] for c in cls_S]
        num_images = cls_S[0].shape[0]
        priors = head_S.prior_generator.grid_priors(
            featmap_sizes, dtype=torch.float32, device=device
        )
        labels, label_weights = dense_targets(
            head_S, featmap_sizes, data_samples, device
        )
        num_classes = head_S.num_classes
        level_positives = [((lv >= 0) & (lv < num_classes)).sum() for lv in labels]
        avg_factor = reduce_mean(sum(level_positives).float()).clamp_(min=1).item()

        losses = {}
        for level, stride in enumerate(strides):
            channels = head_S.cls_out_channels
            logits_S = flatten_level(cls_S[level], channels)
            logits_T = flatten_level(cls_T[level], channels)
            common = dict(
                weight=label_weights[level],
                avg_factor=avg_factor,
                num_level_positives=int(level_positives[level]),
            )
            if self.cls_loss is not None:
                losses['cls'] = losses.get('cls', 0) + self.cls_loss(
                    logits_S, logits_T, **common
                )
            if self.loc_loss is not None:
                level_priors = priors[level].repeat(num_images, 1)
                boxes_S = decode_dense_boxes(head_S, level_priors, reg_S[level], stride)
                with torch.no_grad():
                    boxes_T = decode_dense_boxes(
                        head_T, level_priors, reg_T[level], stride
                    )
                losses['loc'] = losses.get('loc', 0) + self.loc_loss(
                    boxes_S,
                    boxes_T,
                    cls_scores_S=logits_S,
                    cls_scores_T=logits_T,
                    **common,
                )
        return losses
