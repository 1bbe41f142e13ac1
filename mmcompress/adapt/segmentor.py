"""BiSMAP self-training segmentor: an mmseg ``EncoderDecoder`` with a UDA loss.

A training batch (built by ``UDAPairDataset`` + ``uda_collate``) holds source
samples (true labels) and target samples (pseudo-labels from
``PseudoLabelHook``), told apart by ``data_sample.metainfo['domain']``. The loss
follows the official ``CustomModel.step``:

* source: ``CE x transferability weight``, summed over pixels and divided by the
  labelled pixel count; the weights come from the distance of each source
  decoder feature to the target prototypes (``transfer.py``);
* target: symmetric CE (``0.1 CE + 1.0 RCE``) on the pseudo-labels of the clean
  target image;
* consistency: an EMA teacher (momentum 0.999; BN buffers copied from the student
  each step; run in train mode with the classifier's dropout off, as in the
  official code) sees the clean target
  image, the student a strongly augmented copy with a square cut out (side
  ``0.2 W``); ``30 * ramp(it) * KL`` over the pixels outside the cut-out, with the
  official ramp ``exp(-5 (1 - min(it, 4000) / 4000)^2)``.

The decode head's own ``loss_decode`` and pixel sampler are not used in
training (the losses above replace them); an auxiliary head, if any, is trained
on the source images with its own loss.

Inference, ``predict`` and checkpoints are those of ``EncoderDecoder`` (the EMA
teacher is an extra submodule ``ema``, so stock ``tools/test.py`` evaluates the
student of a checkpoint with the same config).
"""

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.runner import CheckpointLoader
from mmseg.models import EncoderDecoder
from mmseg.utils import SampleList
from torch import nn

from mmcompress.registry import MODELS

from .losses import (
    consistency_kl,
    consistency_ramp,
    distill_kl,
    pixel_weighted_ce,
    symmetric_ce,
)
from .transfer import TransferabilityWeights


def decode_with_features(head: nn.Module, x) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a decode head, returning its logits and the features it classifies.

    The features are the input of the head's final classifier (before its
    dropout): BiSMAP's ``cls_feat``, 256-d in DeepLabV3+.

    Args:
        head (nn.Module): An mmseg ``BaseDecodeHead``.
        x: The head's input (backbone / neck outputs).

    Returns:
        tuple[Tensor, Tensor]: ``(B, C, h, w)`` logits, ``(B, D, h, w)`` features.
    """
    target = (
        head.dropout if getattr(head, 'dropout', None) is not None else head.conv_seg
    )
    store = {}

    def grab(_module, args):
        store['feat'] = args[0]

    handle = target.register_forward_pre_hook(grab)
    try:
        logits = head(x)
    finally:
        handle.remove()
    return logits, store['feat']


def strong_augment(
    img: torch.Tensor, cutout_ratio: float, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Colour jitter and a cut-out square on normalised images.

    Per image: contrast x[0.6, 1.4], brightness +-0.4, per-channel gain
    x[0.8, 1.2], Gaussian noise std 0.1 (in normalised units), then a square of
    side ``cutout_ratio * W`` set to 0 at a random place.

    Args:
        img (Tensor): ``(B, 3, H, W)`` normalised images.
        cutout_ratio (float): Side of the cut-out relative to the width.
        generator (torch.Generator, optional): Random source.

    Returns:
        tuple[Tensor, Tensor]: The augmented images and a ``(B, H, W)`` bool mask,
        True outside the cut-out (the pixels the consistency loss uses).
    """
    b, c, h, w = img.shape

    def rand(*shape, low=0.0, high=1.0):
        r = torch.rand(*shape, generator=generator).to(img.device, img.dtype)
        return low + (high - low) * r

    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    out = (img - mean) * rand(b, 1, 1, 1, low=0.6, high=1.4) + mean
    out = out * rand(b, c, 1, 1, low=0.8, high=1.2) + rand(
        b, 1, 1, 1, low=-0.4, high=0.4
    )
    out = out + 0.1 * torch.randn(out.shape, generator=generator).to(out)
    keep = torch.ones(b, h, w, dtype=torch.bool, device=img.device)
    side = int(round(cutout_ratio * w))
    if side > 0:
        for i in range(b):
            top = int(torch.randint(0, max(h - side, 0) + 1, (1,), generator=generator))
            left = int(
                torch.randint(0, max(w - side, 0) + 1, (1,), generator=generator)
            )
            keep[i, top : top + side, left : left + side] = False
            out[i, :, top : top + side, left : left + side] = 0
    return out, keep


@MODELS.register_module()
class BiSMAPSegmentor(EncoderDecoder):
    """``EncoderDecoder`` trained with BiSMAP's source/target self-training loss.

    Args:
        ema_momentum (float): EMA teacher momentum. Defaults to 0.999.
        consistency_weight (float): Weight of the consistency KL (0 turns the EMA
            teacher off). Defaults to 30.
        consistency_rampup (int): Ramp length in iterations. Defaults to 4000.
        sce_alpha (float): CE weight of the target symmetric CE. Defaults to 0.1.
        sce_beta (float): RCE weight. Defaults to 1.0.
        target_weight (float): Weight of the whole target SCE term. Defaults to 1.
        cutout_ratio (float): Cut-out side over the image width. Defaults to 0.2.
        use_transfer_weights (bool): Weight the source CE by transferability.
            Defaults to True.
        transfer (dict, optional): ``TransferabilityWeights`` arguments
            (``momentum``, ``class_offsets``). None: its defaults.
        distill (dict, optional): The self-distillation round: ``checkpoint``
            (the previous round's model, a checkpoint of this config), ``weight``
            (default 1) and ``official_bug`` (default False, see
            ``losses.distill_kl``) add ``weight * KD`` on the clean target image
            (``tgt.loss_kd``). The teacher is kept outside the module tree (never
            saved). None: no distillation.
        **kwargs: ``EncoderDecoder`` arguments (backbone, decode_head...).
    """

    # A source-only checkpoint lacks these: the EMA teacher is copied from the
    # student at the first step, the prototypes come from PseudoLabelHook.
    checkpoint_optional_state = ('ema', 'transfer', 'uda_iter')

    def __init__(
        self,
        ema_momentum: float = 0.999,
        consistency_weight: float = 30.0,
        consistency_rampup: int = 4000,
        sce_alpha: float = 0.1,
        sce_beta: float = 1.0,
        target_weight: float = 1.0,
        cutout_ratio: float = 0.2,
        use_transfer_weights: bool = True,
        transfer: Optional[dict] = None,
        distill: Optional[dict] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= ema_momentum < 1:
            raise ValueError(f'ema_momentum must be in [0, 1), got {ema_momentum}.')
        self.ema_momentum = ema_momentum
        self.consistency_weight = consistency_weight
        self.consistency_rampup = consistency_rampup
        self.sce_alpha, self.sce_beta = sce_alpha, sce_beta
        self.target_weight = target_weight
        self.cutout_ratio = cutout_ratio
        self.transfer = (
            TransferabilityWeights(**(transfer or {})) if use_transfer_weights else None
        )
        self.ema = None
        if consistency_weight > 0:
            parts = dict(backbone=self.backbone, decode_head=self.decode_head)
            if self.with_neck:
                parts['neck'] = self.neck
            self.ema = nn.ModuleDict({k: copy.deepcopy(v) for k, v in parts.items()})
            self.ema.requires_grad_(False)
        self.register_buffer('uda_iter', torch.tensor(0, dtype=torch.long))
        self.distill = None
        self._distill_teacher: List[nn.Module] = []
        if distill is not None:
            self.distill = {**dict(weight=1.0, official_bug=False), **distill}
            if not self.distill.get('checkpoint'):
                raise ValueError(
                    "distill needs checkpoint=<the previous round's checkpoint>, "
                    f'got {distill}.'
                )

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of the parameters (copy at the first step); buffers copied.

        The teacher runs in the student's mode (train mode during training, so
        its BN layers use batch statistics, as in the official code).
        """
        momentum = self.ema_momentum if int(self.uda_iter) > 0 else 0.0
        for name, ema_part in self.ema.items():
            part = getattr(self, name)
            for p_ema, p in zip(ema_part.parameters(), part.parameters()):
                p_ema.mul_(momentum).add_(p.detach(), alpha=1 - momentum)
            for b_ema, b in zip(ema_part.buffers(), part.buffers()):
                b_ema.copy_(b)

    @staticmethod
    def _parts_logits(parts: nn.ModuleDict, inputs: torch.Tensor) -> torch.Tensor:
        x = parts['backbone'](inputs)
        if 'neck' in parts:
            x = parts['neck'](x)
        return parts['decode_head'](x)

    def _ema_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """EMA teacher logits: BN layers in the module's mode, dropout off.

        The official teacher runs in train mode except for the dropout before
        its classifier (``BaseNet_ema.decoder.last_conv[-2].eval()``).
        """
        dropout = getattr(self.ema['decode_head'], 'dropout', None)
        if dropout is None:
            return self._parts_logits(self.ema, inputs)
        mode = dropout.training
        dropout.eval()
        try:
            return self._parts_logits(self.ema, inputs)
        finally:
            dropout.train(mode)

    def _teacher(self, device) -> nn.ModuleDict:
        """The distillation teacher, loaded from its checkpoint on first use."""
        if not self._distill_teacher:
            names = ['backbone', 'decode_head'] + (['neck'] if self.with_neck else [])
            teacher = nn.ModuleDict({k: copy.deepcopy(getattr(self, k)) for k in names})
            ckpt = CheckpointLoader.load_checkpoint(
                self.distill['checkpoint'], map_location='cpu'
            )
            state = ckpt.get('state_dict', ckpt)
            teacher.load_state_dict(
                {k: v for k, v in state.items() if k.split('.')[0] in names}
            )
            self._distill_teacher.append(teacher.eval().requires_grad_(False))
        return self._distill_teacher[0].to(device)

    def _resize(self, logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(
            logits, size=size, mode='bilinear', align_corners=self.align_corners
        )

    @staticmethod
    def _labels(samples: Sequence) -> torch.Tensor:
        return torch.stack([s.gt_sem_seg.data[0] for s in samples]).long()

    def _source_loss(self, inputs, samples) -> Dict[str, torch.Tensor]:
        x = self.extract_feat(inputs)
        logits, feats = decode_with_features(self.decode_head, x)
        labels = self._labels(samples)
        weights = None
        losses = {}
        if self.transfer is not None and self.transfer.ready:
            small = F.interpolate(
                labels[:, None].float(), feats.shape[2:], mode='nearest'
            )
            flat = feats.detach().permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
            w = self.transfer(flat, small.flatten().long())
            w = w.view(feats.shape[0], 1, *feats.shape[2:])
            weights = F.interpolate(w, labels.shape[1:], mode='nearest')[:, 0]
            losses['src.weight'] = weights.mean().detach()
        losses['src.loss_ce'] = pixel_weighted_ce(
            self._resize(logits, labels.shape[1:]),
            labels,
            weights,
            self.decode_head.ignore_index,
        )
        if self.with_auxiliary_head:
            aux = self._auxiliary_head_forward_train(x, samples)
            losses.update({f'src.{k}': v for k, v in aux.items()})
        return losses

    def _target_loss(self, inputs, samples) -> Dict[str, torch.Tensor]:
        labels = self._labels(samples)
        logits = self._resize(
            self.decode_head(self.extract_feat(inputs)), labels.shape[1:]
        )
        losses = {
            'tgt.loss_sce': self.target_weight
            * symmetric_ce(
                logits,
                labels,
                self.sce_alpha,
                self.sce_beta,
                self.decode_head.ignore_index,
            )
        }
        if self.distill is not None:
            with torch.no_grad():
                kd_teacher = self._parts_logits(self._teacher(inputs.device), inputs)
            losses['tgt.loss_kd'] = self.distill['weight'] * distill_kl(
                logits,
                self._resize(kd_teacher, labels.shape[1:]),
                self.distill['official_bug'],
            )
        if self.ema is not None:
            with torch.no_grad():
                teacher = self._resize(self._ema_logits(inputs), inputs.shape[2:])
            strong, keep = strong_augment(inputs, self.cutout_ratio)
            student = self._resize(
                self.decode_head(self.extract_feat(strong)), inputs.shape[2:]
            )
            ramp = consistency_ramp(int(self.uda_iter), self.consistency_rampup)
            losses['tgt.loss_consist'] = (
                self.consistency_weight * ramp * consistency_kl(student, teacher, keep)
            )
        return losses

    def loss(self, inputs: torch.Tensor, data_samples: SampleList) -> dict:
        """Source, target and consistency losses of one mixed batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` source and target images.
            data_samples (list[SegDataSample]): Their samples; ``metainfo
                ['domain']`` is ``'source'`` (the default) or ``'target'``.

        Returns:
            dict[str, Tensor]: ``src.loss_ce``, ``tgt.loss_sce``,
            ``tgt.loss_consist`` (with a teacher) and ``src.weight`` (mean
            transferability weight, logged only).
        """
        src, tgt = split_domains(data_samples)
        if self.ema is not None:
            self._update_ema()
        losses = {}
        if src:
            losses.update(
                self._source_loss(inputs[src], [data_samples[i] for i in src])
            )
        if tgt:
            losses.update(
                self._target_loss(inputs[tgt], [data_samples[i] for i in tgt])
            )
        self.uda_iter += 1
        return losses


def split_domains(data_samples: SampleList) -> Tuple[List[int], List[int]]:
    """Indices of the source and the target samples of a batch."""
    domains = [s.metainfo.get('domain', 'source') for s in data_samples]
    return (
        [i for i, d in enumerate(domains) if d == 'source'],
        [i for i, d in enumerate(domains) if d == 'target'],
    )
