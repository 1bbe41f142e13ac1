"""``DistillModel``: a trainable student distilled from frozen teachers.

Config format: the class docstring and ``docs/distill/guide.md``.

Design choices:

* **Teachers live outside the module tree.** They are held in a plain dict,
  so they are not in ``parameters()`` (hence never in the optimizer, never
  registered by DDP, no ``find_unused_parameters`` needed), not in
  ``state_dict()`` (never stored in a checkpoint: they are reloaded from their
  own checkpoint), and ``model.train()`` cannot switch them out of eval mode.
  ``.to()/.cuda()/.half()`` reach them through :meth:`_apply`.
* **The teacher runs only what is recorded.** It runs its inference forward
  (``mode='tensor'``: backbone, neck and head forward, never its loss), and
  the forward is cut short by an exception as soon as every recorded teacher
  value has been seen. Recording only FPN outputs runs backbone + neck;
  recording ``backbone.layer3`` does not even run ``layer4``. The number of
  calls each recorded module needs is measured by the build-time dry forward.
* **Build-time dry forward.** Student and teacher run once on a random batch
  in the student's input layout (:mod:`.dry_run`; eval mode, no grad, global
  RNG untouched) to check every recorded path, find shapes for automatic
  adapters, build losses with lazy parameters, and switch on cloning for
  values an in-place op would modify.
* **Validation and test run the student only**, with the student's own data
  preprocessor, so stock evaluators and ``tools/test.py`` see a plain model.
* **The student is the product**: a plain ``*_student.pth`` is written next to
  every saved checkpoint by :class:`.StudentCheckpointHook`, which the model
  asks the Runner for (:meth:`DistillModel.runner_hooks`); ``load_from`` of an
  ordinary downstream checkpoint (keys without ``student.``) initialises the
  student.

Parts live in their own modules: the training loss (:mod:`.loss_step`),
entries (:mod:`.entry`), weight schedules (:mod:`.schedule`), the data
preprocessor (:mod:`.preprocessor`), the dry-run batch (:mod:`.dry_run`),
teacher building (:mod:`.teacher`), loss calls (:mod:`.terms`), adapters and
recorders.
"""

import copy
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch import nn

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .adapters import build_entry_adapter
from .dry_run import dry_run_batch, dry_run_teachers, run_recorded
from .entry import DistillEntry
from .loss_step import DistillLossMixin
from .preprocessor import DistillDataPreprocessor
from .recorders import FeatureRecorder
from .student_checkpoint import StudentCheckpointHook, map_plain_student_keys
from .teacher import build_model, build_teacher, resolve_model_config, teacher_dtype
from .terms import (
    loss_kwarg_names,
)


@MODELS.register_module()
class DistillModel(DistillLossMixin, BaseModel):
    """Train a student with its task loss plus distillation from teachers.

    Args:
        student (dict): Student model config (any mmpretrain classifier,
            mmdet detector, mmseg segmentor, mmpose estimator...), or
            ``dict(config=PATH)`` to take the model of a config file.
        distill (dict[str, dict]): Distillation entries by name. Each has
            ``student`` and ``teacher`` record specs (see
            :mod:`.recorders`), ``loss`` (a loss config; called as
            ``loss(preds_S, preds_T, **kw)`` where ``kw`` has ``gt_labels``,
            ``data_samples``, ``student_model`` (the student) and/or
            ``teacher_model`` (the entry's teacher) when its signature names
            them; entries recording several tensors pass lists; a loss may
            return a dict of named terms, logged as
            ``loss_distill_<entry>_<term>``), optional ``adapter``
            (``'auto'`` (default), ``None`` or a config, see
            :mod:`.adapters`), ``teacher_name`` (with several teachers) and
            ``schedule`` (:class:`LossWeightSchedule` arguments).
        teacher (dict, optional): The teacher: ``config`` (config path such
            as ``'mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py'``, a local file, or
            an inline model dict), ``checkpoint`` (local path or URL; None:
            initialised by its own ``init_cfg``, with a warning),
            ``data_preprocessor`` (``'auto'``: the teacher's own when its
            config differs from the student's, else shared; ``'student'``;
            ``'own'``; or a preprocessor config), ``trust_checkpoint`` and
            ``precision`` (``'fp32'`` (default), ``'bf16'`` or ``'fp16'``:
            the teacher's forward runs under ``torch.autocast`` with that
            dtype; its recorded values are cast back to float32 before the
            losses).
        teachers (dict[str, dict], optional): Several teachers by name,
            instead of ``teacher``.
        student_loss_weight (float): Multiplier of the student's task
            losses. Defaults to 1.0.
        schedule (dict, optional): Default loss-weight schedule of all
            entries (e.g. ``dict(warmup_epochs=20)`` or
            ``dict(stop_epoch=10)``).
        input_shape (Sequence[int], optional): Per-sample input shape of the
            build-time dry forward, after the data preprocessor (any rank:
            (C, H, W) images, (C, L) sequences...). Defaults to the student's
            layout (:mod:`.dry_run`; images: (channels of the first conv,
            224, 224)).
        data_preprocessor (dict, optional): Used as the student's (and
            teachers' with inline configs) preprocessor when their configs
            have none; the Runner fills it from the config's top-level
            ``data_preprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    # a plain student checkpoint (load_from) has no adapters or loss state:
    # they may be missing on load (mmcompress.utils.load_check)
    checkpoint_optional_state = ('adapters', 'distill_losses')

    def __init__(
        self,
        student: dict,
        distill: Dict[str, dict],
        teacher: Optional[dict] = None,
        teachers: Optional[Dict[str, dict]] = None,
        student_loss_weight: float = 1.0,
        schedule: Optional[dict] = None,
        input_shape: Optional[Sequence[int]] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if (teacher is None) == (teachers is None):
            raise ValueError(
                'DistillModel needs exactly one of `teacher` '
                '(one teacher) and `teachers` (dict by name).'
            )
        teacher_cfgs = {'teacher': teacher} if teacher is not None else dict(teachers)
        if not isinstance(distill, dict) or not distill:
            raise ValueError(
                '`distill` must be a non-empty dict of entries '
                f'by name, got {distill!r}.'
            )
        self.student_loss_weight = check_number(
            'student_loss_weight', student_loss_weight, low=0, owner='DistillModel'
        )

        student_cfg, student_scope = resolve_model_config(
            student, 'student', data_preprocessor
        )
        # (builders may fill defaults into the dicts: compare the originals)
        student_preprocessor_cfg = copy.deepcopy(student_cfg.get('data_preprocessor'))
        self.student = build_model(student_cfg, student_scope)
        # Teachers are kept outside the module tree (see the module doc).
        self._teachers: Dict[str, nn.Module] = {}
        self._teacher_dtypes: Dict[str, Optional[torch.dtype]] = {}
        teacher_preprocessors = {}
        for name, cfg in teacher_cfgs.items():
            model, preprocessor = build_teacher(
                name, cfg, student_preprocessor_cfg, data_preprocessor
            )
            self._teachers[name] = model
            self._teacher_dtypes[name] = teacher_dtype(name, cfg)
            if preprocessor is not None:
                teacher_preprocessors[name] = preprocessor
        self.data_preprocessor = DistillDataPreprocessor(
            self.student.data_preprocessor, teacher_preprocessors
        )

        self._entries = [
            DistillEntry(name, dict(cfg), list(self._teachers), schedule)
            for name, cfg in distill.items()
        ]
        unused = set(self._teachers) - {e.teacher_name for e in self._entries}
        if unused:
            raise ValueError(
                f'Teacher(s) {sorted(unused)} are used by no '
                'distill entry; remove them or add entries with '
                'teacher_name=...'
            )
        self.distill_losses = nn.ModuleDict(
            {e.name: MODELS.build(e.loss_cfg) for e in self._entries}
        )
        self._loss_kwargs = {
            name: loss_kwarg_names(loss) for name, loss in self.distill_losses.items()
        }
        self._student_recorder = FeatureRecorder(
            self.student, {e.name: e.student_specs for e in self._entries}, 'student'
        )
        self._teacher_recorders = {
            t: FeatureRecorder(
                self._teachers[t],
                {e.name: e.teacher_specs for e in self._entries if e.teacher_name == t},
                f'teacher {t!r}',
            )
            for t in self._teachers
        }
        self.adapters = nn.ModuleDict()
        self._dry_run(input_shape)
        self._grad_warned = set()
        self.register_load_state_dict_pre_hook(map_plain_student_keys)

    def runner_hooks(self) -> List[Hook]:
        """The hooks this model needs, registered by mmengine's Runner after
        the config's hooks (see :mod:`mmcompress.utils.runner`).

        Returns:
            list[Hook]: A :class:`.StudentCheckpointHook` (plain student files
            next to every checkpoint).
        """
        return [StudentCheckpointHook()]

    # ------------------------------------------------------------ dry run
    def _dry_run(self, input_shape: Optional[Sequence[int]]) -> None:
        """One forward of every model (:mod:`.dry_run`): checks paths, sizes
        adapters and lazy losses, measures call counts and in-place
        modifications."""
        inputs, samples, layout = dry_run_batch(self.student, input_shape)
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad(), torch.random.fork_rng():
            records_T = dry_run_teachers(
                self._teachers,
                self._teacher_recorders,
                self._entries,
                inputs,
                samples,
                layout,
            )
            run_recorded(
                self.student, self._student_recorder, inputs, samples, 'student', layout
            )
            for entry in self._entries:
                self._build_adapter(
                    entry,
                    self._student_recorder.get(entry.name),
                    records_T[entry.name],
                    samples,
                )
        self.student.train(was_training)

    def _build_adapter(
        self,
        entry: DistillEntry,
        feats_S: List[torch.Tensor],
        feats_T: List[torch.Tensor],
        samples: list,
    ) -> None:
        """Build the entry's adapter from the dry-run records and check that
        its loss runs on them (building lazy loss parameters)."""
        loss = self.distill_losses[entry.name]
        adapter = build_entry_adapter(
            entry.adapter_cfg,
            entry.name,
            [f.shape for f in feats_S],
            [f.shape for f in feats_T],
            getattr(loss, 'channel_affine_invariant', False),
            getattr(loss, 'compares_class_distributions', False),
            type(loss).__name__,
        )
        if not adapter.is_identity:
            self.adapters[entry.name] = adapter
            feats_S = adapter(feats_S, feats_T)
        try:
            self._call_loss(
                entry,
                feats_S,
                feats_T,
                torch.zeros(len(samples), dtype=torch.long),
                samples,
            )
        except Exception as err:
            raise RuntimeError(
                f'Distill entry {entry.name!r}: the loss '
                f'{type(loss).__name__} failed on the dry-run features '
                f'(student shapes {[tuple(f.shape) for f in feats_S]}, '
                f'teacher {[tuple(f.shape) for f in feats_T]}): {err}'
            ) from err

    # ------------------------------------------------------------- teachers
    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """The frozen teachers by name (not submodules, see module doc)."""
        return dict(self._teachers)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for teacher in self._teachers.values():
            teacher._apply(fn, recurse)
        return self

    def _set_device(self, device: torch.device) -> None:
        super()._set_device(device)
        for teacher in self._teachers.values():
            if isinstance(teacher, BaseModel):
                teacher._set_device(device)

    # -------------------------------------------------------------- forward
    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[list] = None,
        mode: str = 'tensor',
        teacher_inputs: Optional[Dict[str, torch.Tensor]] = None,
    ):
        """``'loss'``: student losses + distillation losses; ``'predict'`` and
        ``'tensor'``: the student alone.

        Args:
            inputs (Tensor): The student's preprocessed inputs.
            data_samples (list, optional): Data samples of the batch.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
            teacher_inputs (dict[str, Tensor], optional): Inputs of teachers
                with their own preprocessing (from
                :class:`DistillDataPreprocessor`).
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples, teacher_inputs)
        if mode in ('predict', 'tensor'):
            return self.student(inputs, data_samples, mode=mode)
        raise ValueError(f'Invalid mode {mode!r}; valid: loss, predict, tensor.')
