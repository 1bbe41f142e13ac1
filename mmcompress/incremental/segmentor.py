"""``IncrementalEncoderDecoder``: an mmseg segmentor for one incremental step.

It is mmseg's ``EncoderDecoder`` whose decode head only gives features
(its ``_forward_feature``; its ``conv_seg`` is removed) and whose classes come
from an :class:`.IncrementalClassifier` with one head per step learnt so far.

**Stepping with the stock tools.** A step-t config inherits step 0's and sets
``step=t`` and ``load_from`` = the checkpoint of step t-1. When the Runner
loads a checkpoint that has the heads of step t-1 only, the model (a
load-time hook, before mmengine copies the weights):

* checks each head's class count against the split (a checkpoint of another
  split, step or dataset is an error naming both);
* builds the **frozen previous-step model** from that checkpoint. As
  ``DistillModel``'s teachers, it is held outside the module tree: it is never
  in ``parameters()`` (so never in the optimizer or in DDP), never in
  ``state_dict()`` (the saved checkpoint is the plain step-t model, which
  stock ``tools/test.py`` evaluates), and ``model.train()`` cannot switch it
  out of eval mode;
* initialises the new head (``novel_init``): DKD copies the auxiliary
  classifier into every row; MiB's softmax variant copies the background
  classifier with bias ``b - log(K + 1)``; ``'random'`` keeps the Kaiming
  initialisation. By default DKD copies only when its ``ac`` weight is > 0
  (the official rule), otherwise it keeps the random rows.

A checkpoint of step t itself (evaluation, ``resume``) loads as it is; the
previous model exists only after a previous-step load, so a resumed
incremental step must restart from ``load_from``.

At steps >= 1 all BN layers run in eval mode with frozen affine parameters
and dropout is off (the official ``freeze_bn`` / ``freeze_dropout``; the
official optimizer leaves BN parameters out at these steps).

**Inference** (``head_type='sigmoid'``, the official rule): a pixel takes the
class of highest sigmoid score, or background when no class scores above 0.5.
``encode_decode`` returns logits whose channel 0 is the constant 0 (the
logit of 0.5) in place of the auxiliary one, so mmseg's argmax gives exactly
this rule. ``head_type='softmax'``: argmax of the softmax logits.
"""

import copy
import logging
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmcompress.distill.teacher import build_model, freeze
from mmcompress.registry import MODELS

from .classifier import IncrementalClassifier
from .losses import (
    ac_loss,
    bce_kd_loss,
    mbce_loss,
    unbiased_ce_loss,
    unbiased_kd_loss,
)
from .split import check_step, parse_split

DKD_WEIGHTS = dict(mbce=1.0, kd=5.0, dkd_pos=5.0, dkd_neg=5.0, ac=1.0)
MIB_WEIGHTS = dict(ce=1.0, kd=10.0)
NOVEL_INITS = ('aux', 'random')


@MODELS.register_module()
class IncrementalEncoderDecoder(EncoderDecoder):
    """Segmentor of step ``step`` of a class-incremental split.

    Args:
        split (str | list[list[int]]): The split (:func:`.parse_split`).
        num_classes (int): Foreground classes of the dataset (background
            excluded).
        step (int): The step this model learns. Defaults to 0.
        decode_head (dict): An mmseg decode head with ``_forward_feature``
            (FCN, ASPP, ...); its ``num_classes`` is set from the split.
        head_type (str): ``'sigmoid'`` (DKD, default) or ``'softmax'`` (MiB).
        loss_weights (dict, optional): Loss weights. Sigmoid: ``mbce``,
            ``kd``, ``dkd_pos``, ``dkd_neg``, ``ac`` (official 1, 5, 5, 5,
            1; only ``mbce`` and ``ac`` act at step 0; all KD weights 0 is
            fine-tuning). Softmax: ``ce``, ``kd`` (1, 10).
        pos_weight (float, optional): ``pos_weight`` of the mBCE loss; None:
            2 at step 0 and 1 later (official scripts).
        novel_init (str, optional): ``'aux'`` or ``'random'``. None (default)
            follows the official rule: ``'aux'`` when the ``ac`` weight is
            > 0 or ``head_type='softmax'`` (MiB), ``'random'`` otherwise.
        freeze_bn (bool): Freeze BN and dropout at steps >= 1. Defaults to
            True.
        **kwargs: ``EncoderDecoder`` arguments (``backbone``,
            ``data_preprocessor``, ``train_cfg``, ``test_cfg``...).
    """

    def __init__(
        self,
        split,
        num_classes: int,
        decode_head: dict,
        step: int = 0,
        head_type: str = 'sigmoid',
        loss_weights: Optional[Dict[str, float]] = None,
        pos_weight: Optional[float] = None,
        novel_init: Optional[str] = None,
        freeze_bn: bool = True,
        **kwargs,
    ) -> None:
        steps = parse_split(split, num_classes)
        check_step(split, steps, step)
        if novel_init is not None and novel_init not in NOVEL_INITS:
            raise ValueError(
                f'novel_init={novel_init!r} is invalid; use one of '
                f'{NOVEL_INITS} or None (the official rule).'
            )
        defaults = DKD_WEIGHTS if head_type == 'sigmoid' else MIB_WEIGHTS
        weights = dict(defaults, **(loss_weights or {}))
        unknown = set(weights) - set(defaults)
        if unknown:
            raise KeyError(
                f'loss_weights {sorted(unknown)} are not losses of '
                f'head_type={head_type!r}; valid: {sorted(defaults)}.'
            )
        self._teacher_cfg = dict(
            type=type(self).__name__,
            split=split,
            num_classes=num_classes,
            decode_head=copy.deepcopy(decode_head),
            step=step - 1,
            head_type=head_type,
            freeze_bn=freeze_bn,
            **copy.deepcopy(kwargs),
        )
        self.split, self.step, self.steps = split, step, steps
        self.sizes = [len(s) for s in steps[: step + 1]]
        head = copy.deepcopy(decode_head)
        head['num_classes'] = 1 + sum(self.sizes)
        super().__init__(decode_head=head, **kwargs)
        # the classes come from self.classifier: no conv_seg (nor its init)
        self.decode_head.conv_seg = None
        self.decode_head.init_cfg = None
        self.classifier = IncrementalClassifier(
            self.decode_head.channels, self.sizes, head_type
        )
        self.head_type, self.loss_weights = head_type, weights
        self.pos_weight = (
            pos_weight if pos_weight is not None else (2.0 if step == 0 else 1.0)
        )
        if novel_init is None:  # official train_voc.py: aux init only if ac > 0
            trained_aux = head_type == 'softmax' or weights['ac'] > 0
            novel_init = 'aux' if trained_aux else 'random'
        self.novel_init, self.freeze_bn = novel_init, freeze_bn and step > 0
        if head_type == 'sigmoid' and not weights['ac'] and step + 1 < len(steps):
            print_log(
                f'loss_weights ac=0: the auxiliary classifier is not trained at '
                f"step {step}, so step {step + 1} with novel_init='aux' (the "
                'default when its ac > 0) would start its new classes from it '
                f"untrained. Keep ac > 0 here or set novel_init='random' at "
                f'step {step + 1}.',
                logger='current',
                level=logging.WARNING,
            )
        self._previous: Dict[str, nn.Module] = {}  # outside the module tree
        self._loaded: Optional[str] = None  # 'previous' or 'same' step
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.requires_grad_(False)
        self._register_load_state_dict_pre_hook(self._on_load)

    # ---------------------------------------------------------------- model
    @property
    def previous_model(self) -> Optional['IncrementalEncoderDecoder']:
        """The frozen previous-step model (None before a previous-step load)."""
        return self._previous.get('model')

    def features(self, inputs: Tensor) -> Tensor:
        """Decode-head features the classifiers see (N, C, h, w)."""
        feats = self.decode_head._forward_feature(self.extract_feat(inputs))
        if self.decode_head.dropout is not None:
            feats = self.decode_head.dropout(feats)
        return feats

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Class scores at input size for mmseg's argmax (module docstring)."""
        logits = self.classifier(self.features(inputs))
        if self.head_type == 'sigmoid':
            logits = torch.cat([torch.zeros_like(logits[:, :1]), logits[:, 1:]], 1)
        return resize(
            logits,
            size=batch_img_metas[0]['img_shape'],
            mode='bilinear',
            align_corners=self.align_corners,
        )

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        """Classifier logits at feature resolution (channel 0 auxiliary)."""
        return self.classifier(self.features(inputs))

    def train(self, mode: bool = True) -> 'IncrementalEncoderDecoder':
        """Train mode, with BN and dropout frozen at steps >= 1."""
        super().train(mode)
        if mode and self.freeze_bn:
            for module in self.modules():
                if isinstance(module, (_BatchNorm, nn.Dropout, nn.Dropout2d)):
                    module.eval()
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.previous_model is not None:
            self.previous_model._apply(fn, *args, **kwargs)
        return self

    # ----------------------------------------------------------------- loss
    def loss(self, inputs: Tensor, data_samples) -> dict:
        """The step's losses (:mod:`.losses`)."""
        feats = self.features(inputs)
        small = self.classifier(feats)
        logits = resize(
            small,
            size=inputs.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners,
        )
        label = torch.stack([s.gt_sem_seg.data[0] for s in data_samples]).long()
        num_old = sum(self.sizes[:-1])
        w = self.loss_weights
        kd_terms = [k for k in w if k not in ('mbce', 'ac', 'ce') and w[k]]
        teacher = self._teacher_outputs(inputs) if self.step and kd_terms else None
        losses = {}
        if self.head_type == 'softmax':
            losses['loss_ce'] = w['ce'] * unbiased_ce_loss(logits, label, 1 + num_old)
            if teacher is not None:
                losses['loss_kd'] = w['kd'] * unbiased_kd_loss(
                    logits, teacher['logits']
                )
            return losses
        losses['loss_mbce'] = w['mbce'] * mbce_loss(
            logits[:, 1 + num_old :], label, 1 + num_old, self.pos_weight
        )
        if w['ac']:
            losses['loss_ac'] = w['ac'] * ac_loss(logits[:, :1])
        if teacher is None:
            return losses
        if w['kd']:
            losses['loss_kd'] = w['kd'] * bce_kd_loss(
                logits[:, 1 : 1 + num_old], teacher['logits'][:, 1:]
            )
        if w['dkd_pos'] or w['dkd_neg']:
            pos, neg = self.classifier.decompose(feats)
            for name, ours, theirs in (
                ('dkd_pos', pos, teacher['pos']),
                ('dkd_neg', neg, teacher['neg']),
            ):
                if w[name]:
                    losses[f'loss_{name}'] = w[name] * bce_kd_loss(
                        ours[:, :num_old], theirs
                    )
        return losses

    def _teacher_outputs(self, inputs: Tensor) -> Dict[str, Tensor]:
        """The previous model's logits (input size) and reasoning terms."""
        model = self.previous_model
        if model is None and self._loaded is None:
            print_log(
                f'Step {self.step} of split {self.split!r}: no checkpoint was '
                f'loaded, so the previous model is the initial step-{self.step - 1} '
                'part of this model (random without load_from). Set load_from '
                f'to the checkpoint of step {self.step - 1}.',
                logger='current',
                level=logging.WARNING,
            )
            own = {
                k: v
                for k, v in self.state_dict().items()
                if not k.startswith(f'classifier.heads.{len(self.sizes)}.')
            }
            self._build_previous(own)
            model = self.previous_model
        if model is None:
            raise RuntimeError(
                f'Step {self.step} of split {self.split!r} distils from the '
                f'step-{self.step - 1} model, but none was loaded: set load_from '
                f'to the checkpoint of step {self.step - 1} (a resumed '
                'incremental step restarts from load_from), or set the KD loss '
                'weights to 0 to fine-tune.'
            )
        with torch.no_grad():
            feats = model.features(inputs)
            small = model.classifier(feats)
            out = dict(
                logits=resize(
                    small,
                    size=inputs.shape[2:],
                    mode='bilinear',
                    align_corners=self.align_corners,
                )
            )
            if self.head_type == 'sigmoid':
                out['pos'], out['neg'] = model.classifier.decompose(feats)
        return out

    # ----------------------------------------------------------------- load
    def _on_load(self, state_dict, prefix, *args) -> None:
        """Check head sizes; on a previous-step checkpoint build the previous
        model and initialise the new head (module docstring)."""
        key = f'{prefix}classifier.heads.{{}}.'
        present = 0
        while key.format(present) + 'weight' in state_dict:
            present += 1
        if not present:
            return
        expected = [1] + self.sizes
        for index in range(min(present, len(expected))):
            got = state_dict[key.format(index) + 'weight'].shape[0]
            if got != expected[index]:
                what = 'auxiliary' if index == 0 else f'step {index - 1}'
                raise ValueError(
                    f'Checkpoint head classifier.heads.{index} ({what}) has '
                    f'{got} classes, but split {self.split!r} gives it '
                    f'{expected[index]} (step sizes {[len(s) for s in self.steps]}): '
                    'load_from must be a checkpoint of the same split, of step '
                    f'{self.step - 1} (to train step {self.step}) or {self.step}.'
                )
        if present == len(expected):
            self._loaded = self._loaded or 'same'
            return
        if present != len(expected) - 1:
            raise ValueError(
                f'Checkpoint has the heads of step {present - 2} of split '
                f'{self.split!r}; a step-{self.step} model loads the checkpoint '
                f'of step {self.step - 1} (to train) or {self.step} (to test).'
            )
        own = {
            k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
        }
        self._build_previous(own)
        self._loaded = 'previous'
        new = key.format(present)
        aux = key.format(0)
        if self.novel_init == 'aux':
            weight, bias, aux_bias = IncrementalClassifier.novel_init_state(
                state_dict[aux + 'weight'],
                state_dict[aux + 'bias'],
                self.sizes[-1],
                self.head_type,
            )
            state_dict[aux + 'bias'] = aux_bias
        else:
            weight, bias = (
                self.classifier.heads[-1].weight,
                self.classifier.heads[-1].bias,
            )
        state_dict[new + 'weight'] = weight.detach().clone()
        state_dict[new + 'bias'] = bias.detach().clone()

    def _build_previous(self, state_dict: dict) -> None:
        """Build, load and freeze the previous-step model."""
        model = build_model(copy.deepcopy(self._teacher_cfg), 'mmseg')
        model.load_state_dict(state_dict, strict=True)
        device = next(self.parameters()).device
        self._previous['model'] = freeze(model).to(device)
