"""``DistillModel``: a trainable student distilled from frozen teachers.

Config format (see ``docs/distill/guide.md``)::

    model = dict(
        type='DistillModel',
        student=dict(type='ImageClassifier', ...),          # or dict(config=...)
        teacher=dict(config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
                     checkpoint='https://download.openmmlab.com/...pth'),
        distill=dict(
            kd=dict(student='head.fc', teacher='head.fc',
                    loss=dict(type='VanillaKDLoss', tau=4, loss_weight=1.0)),
            fpn=dict(student='neck', teacher='neck',          # all FPN levels
                     loss=dict(type='PKDLoss', loss_weight=6))))

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
* **Build-time dry forward.** Student and teacher run once on a random input
  of ``input_shape`` (eval mode, no grad, global RNG untouched) to check every
  recorded path, find shapes for automatic adapters, build losses with lazy
  parameters, and switch on cloning for values an in-place op would modify.
* **Validation and test run the student only**, with the student's own data
  preprocessor, so stock evaluators and ``tools/test.py`` see a plain model.
* **The student is the product**: a plain ``*_student.pth`` is written next to
  every saved checkpoint (:mod:`.student_checkpoint`), and ``load_from`` of an
  ordinary downstream checkpoint (keys without ``student.``) initialises the
  student.
"""
import contextlib
import copy
import inspect
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from mmcompress.registry import MODELS
from .adapters import build_entry_adapter
from .recorders import FeatureRecorder, RecordSpec, StopForward
from .student_checkpoint import StudentCheckpointWriter
from .teacher import (build_model, freeze, load_model_config,
                      load_teacher_weights)

_ENTRY_KEYS = ('student', 'teacher', 'loss', 'adapter', 'teacher_name',
               'schedule')
_TEACHER_KEYS = ('config', 'checkpoint', 'data_preprocessor',
                 'trust_checkpoint', 'precision')
_TEACHER_PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16,
                       'fp16': torch.float16}


class LossWeightSchedule:
    """Multiplier of a distillation loss over training.

    The factor is ``min((epoch + 1) / warmup_epochs, 1)`` (mmengine epochs
    start at 0, so the first epoch gets ``1 / warmup_epochs`` as in the
    official Decoupled KD code), times ``min((iter + 1) / warmup_iters, 1)``,
    and 0 from ``stop_epoch`` / ``stop_iter`` on. Epoch and iteration are read
    from the MessageHub, which every mmengine train loop updates.

    Args:
        warmup_epochs (int): Epochs of linear warm-up (0: none).
        warmup_iters (int): Iterations of linear warm-up (0: none).
        stop_epoch (int, optional): First epoch without distillation.
        stop_iter (int, optional): First iteration without distillation.
    """

    def __init__(self,
                 warmup_epochs: int = 0,
                 warmup_iters: int = 0,
                 stop_epoch: Optional[int] = None,
                 stop_iter: Optional[int] = None) -> None:
        for name, value in (('warmup_epochs', warmup_epochs),
                            ('warmup_iters', warmup_iters),
                            ('stop_epoch', stop_epoch or 0),
                            ('stop_iter', stop_iter or 0)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f'schedule {name} must be an int >= 0, got '
                                 f'{value!r}.')
        self.warmup_epochs = warmup_epochs
        self.warmup_iters = warmup_iters
        self.stop_epoch = stop_epoch
        self.stop_iter = stop_iter

    def factor(self) -> float:
        """The current multiplier in [0, 1]."""
        hub = MessageHub.get_current_instance()
        epoch = hub.get_info('epoch', 0) or 0
        it = hub.get_info('iter', 0) or 0
        if (self.stop_epoch is not None and epoch >= self.stop_epoch) or \
                (self.stop_iter is not None and it >= self.stop_iter):
            return 0.0
        factor = 1.0
        if self.warmup_epochs:
            factor *= min((epoch + 1) / self.warmup_epochs, 1.0)
        if self.warmup_iters:
            factor *= min((it + 1) / self.warmup_iters, 1.0)
        return factor


def _rng_state() -> tuple:
    import random

    import numpy as np
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() \
        else None
    return torch.get_rng_state(), cuda, np.random.get_state(), \
        random.getstate()


def _set_rng_state(state: tuple) -> None:
    import random

    import numpy as np
    cpu, cuda, numpy_state, python_state = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


class DistillDataPreprocessor(BaseDataPreprocessor):
    """The student's data preprocessor, plus teachers' own ones if any.

    In evaluation it is exactly the student's preprocessor. In training,
    teachers that need a different preprocessing (e.g. other mean/std) get
    their inputs from their own preprocessor, run on the same raw batch with
    the random state the student's preprocessor started from, so random batch
    augmentations (mixup...) draw the same numbers; they are passed to the
    model as ``teacher_inputs``.

    Args:
        student (nn.Module): The student's preprocessor.
        teachers (dict[str, nn.Module]): Preprocessors of the teachers that
            do not share the student's.
    """

    def __init__(self, student: nn.Module,
                 teachers: Dict[str, nn.Module]) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleDict(teachers)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess ``data`` (see the class docstring)."""
        if not training or len(self.teachers) == 0:
            return self.student(data, training)
        start = _rng_state()
        out = dict(self.student(data, training))
        after = _rng_state()
        teacher_inputs = {}
        for name, preprocessor in self.teachers.items():
            _set_rng_state(start)
            teacher_inputs[name] = preprocessor(data, training)['inputs']
        _set_rng_state(after)
        out['teacher_inputs'] = teacher_inputs
        return out


class _Entry:
    """One parsed distillation entry."""

    def __init__(self, name: str, cfg: dict, teacher_names: Sequence[str],
                 default_schedule: Optional[dict]) -> None:
        unknown = set(cfg) - set(_ENTRY_KEYS)
        missing = {'student', 'teacher', 'loss'} - set(cfg)
        if unknown or missing:
            raise KeyError(
                f'Distill entry {name!r}: ' +
                (f'unknown keys {sorted(unknown)}; ' if unknown else '') +
                (f'missing keys {sorted(missing)}; ' if missing else '') +
                f'valid keys: {_ENTRY_KEYS}.')
        self.name = name
        self.student_specs = RecordSpec.parse(cfg['student'])
        self.teacher_specs = RecordSpec.parse(cfg['teacher'])
        self.loss_cfg = cfg['loss']
        self.adapter_cfg = cfg.get('adapter', 'auto')
        teacher_name = cfg.get('teacher_name')
        if teacher_name is None:
            if len(teacher_names) != 1:
                raise ValueError(
                    f'Distill entry {name!r} must name its teacher with '
                    f'teacher_name=..., one of {list(teacher_names)}.')
            teacher_name = teacher_names[0]
        elif teacher_name not in teacher_names:
            raise KeyError(f'Distill entry {name!r}: teacher_name '
                           f'{teacher_name!r} is not one of '
                           f'{list(teacher_names)}.')
        self.teacher_name = teacher_name
        schedule = cfg.get('schedule', default_schedule)
        self.schedule = LossWeightSchedule(**(schedule or {}))
        self.loss_key = f'loss_distill_{name}'


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def _loss_kwarg_names(loss: nn.Module) -> set:
    names = set()
    for fn in (loss.forward, getattr(loss, 'loss_single', None)):
        if fn is not None:
            names.update(inspect.signature(fn).parameters)
    return names


@MODELS.register_module()
class DistillModel(BaseModel):
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
        input_shape (Sequence[int], optional): (C, H, W) of the build-time
            dry forward. Defaults to (channels of the student's first conv,
            224, 224).
        data_preprocessor (dict, optional): Used as the student's (and
            teachers' with inline configs) preprocessor when their configs
            have none; the Runner fills it from the config's top-level
            ``data_preprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 student: dict,
                 distill: Dict[str, dict],
                 teacher: Optional[dict] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 student_loss_weight: float = 1.0,
                 schedule: Optional[dict] = None,
                 input_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if (teacher is None) == (teachers is None):
            raise ValueError('DistillModel needs exactly one of `teacher` '
                             '(one teacher) and `teachers` (dict by name).')
        teacher_cfgs = {'teacher': teacher} if teacher is not None \
            else dict(teachers)
        if not isinstance(distill, dict) or not distill:
            raise ValueError('`distill` must be a non-empty dict of entries '
                             f'by name, got {distill!r}.')
        self.student_loss_weight = student_loss_weight

        student_cfg, student_scope = self._resolve(student, 'student',
                                                   data_preprocessor)
        # (builders may fill defaults into the dicts: compare the originals)
        student_preprocessor_cfg = copy.deepcopy(
            student_cfg.get('data_preprocessor'))
        self.student = build_model(student_cfg, student_scope)
        # Teachers are kept outside the module tree (see the module doc).
        self._teachers: Dict[str, nn.Module] = {}
        self._teacher_dtypes: Dict[str, Optional[torch.dtype]] = {}
        teacher_preprocessors = {}
        for name, cfg in teacher_cfgs.items():
            model, preprocessor = self._build_teacher(
                name, cfg, student_preprocessor_cfg, data_preprocessor)
            self._teachers[name] = model
            self._teacher_dtypes[name] = self._teacher_dtype(name, cfg)
            if preprocessor is not None:
                teacher_preprocessors[name] = preprocessor
        self.data_preprocessor = DistillDataPreprocessor(
            self.student.data_preprocessor, teacher_preprocessors)

        self._entries = [
            _Entry(name, dict(cfg), list(self._teachers), schedule)
            for name, cfg in distill.items()
        ]
        unused = set(self._teachers) - {e.teacher_name for e in self._entries}
        if unused:
            raise ValueError(f'Teacher(s) {sorted(unused)} are used by no '
                             'distill entry; remove them or add entries with '
                             'teacher_name=...')
        self.distill_losses = nn.ModuleDict(
            {e.name: MODELS.build(e.loss_cfg)
             for e in self._entries})
        self._loss_kwargs = {
            name: _loss_kwarg_names(loss)
            for name, loss in self.distill_losses.items()
        }
        self._student_recorder = FeatureRecorder(
            self.student, {e.name: e.student_specs
                           for e in self._entries}, 'student')
        self._teacher_recorders = {
            t: FeatureRecorder(
                self._teachers[t], {
                    e.name: e.teacher_specs
                    for e in self._entries if e.teacher_name == t
                }, f'teacher {t!r}')
            for t in self._teachers
        }
        self.adapters = nn.ModuleDict()
        self._dry_run(input_shape)
        self._grad_warned = set()
        self._checkpoint_writer = StudentCheckpointWriter()
        self.register_load_state_dict_pre_hook(self._map_plain_keys)

    # ---------------------------------------------------------------- build
    @staticmethod
    def _resolve(cfg: dict, role: str, data_preprocessor: Optional[dict]):
        if not isinstance(cfg, dict):
            raise TypeError(f'{role} must be a model config dict, got '
                            f'{type(cfg).__name__}.')
        if 'config' in cfg:
            model_cfg, scope = load_model_config(cfg['config'], role)
        else:
            model_cfg, scope = load_model_config(cfg, role)
        if data_preprocessor is not None and scope is None:
            model_cfg.setdefault('data_preprocessor',
                                 copy.deepcopy(data_preprocessor))
        return model_cfg, scope

    def _build_teacher(self, name: str, cfg: dict,
                       student_preprocessor_cfg: Optional[dict],
                       data_preprocessor: Optional[dict]):
        if not isinstance(cfg, dict) or 'config' not in cfg:
            raise ValueError(
                f'Teacher {name!r} must be dict(config=..., checkpoint=...), '
                f'got {cfg!r}.')
        unknown = set(cfg) - set(_TEACHER_KEYS)
        if unknown:
            raise KeyError(f'Teacher {name!r}: unknown keys {sorted(unknown)}'
                           f'; valid keys: {_TEACHER_KEYS}.')
        config = cfg['config']
        model_cfg, scope = self._resolve(
            config if isinstance(config, dict) and 'type' in config else
            dict(config=config), f'teacher {name!r}', data_preprocessor)
        shares_student_preprocessor = \
            model_cfg.get('data_preprocessor') == student_preprocessor_cfg
        model = build_model(model_cfg, scope)
        checkpoint = cfg.get('checkpoint')
        if checkpoint is None:
            print_log(
                f'Teacher {name!r} has no checkpoint: it is initialised by '
                'its own init_cfg (random without one).',
                logger='current',
                level=30)
            model.init_weights()
        else:
            load_teacher_weights(model, checkpoint,
                                 cfg.get('trust_checkpoint', False))
        freeze(model)
        mode = cfg.get('data_preprocessor', 'auto')
        if mode == 'auto':
            mode = 'student' if shares_student_preprocessor else 'own'
        if mode == 'student':
            preprocessor = None
        elif mode == 'own':
            preprocessor = model.data_preprocessor
        elif isinstance(mode, dict):
            preprocessor = build_model(mode, scope)
        else:
            raise ValueError(
                f"Teacher {name!r}: data_preprocessor={mode!r} is invalid; use "
                "'auto', 'student', 'own' or a preprocessor config.")
        return model, preprocessor

    @staticmethod
    def _teacher_dtype(name: str, cfg: dict) -> Optional[torch.dtype]:
        precision = cfg.get('precision', 'fp32')
        if precision not in _TEACHER_PRECISIONS:
            raise ValueError(
                f'Teacher {name!r}: precision={precision!r} is invalid; use '
                f'one of {sorted(_TEACHER_PRECISIONS)}.')
        return _TEACHER_PRECISIONS[precision]

    def _dry_inputs(self, input_shape: Optional[Sequence[int]]):
        if input_shape is None:
            first_conv = next((m for m in self.student.modules()
                               if isinstance(m, nn.Conv2d)), None)
            channels = first_conv.in_channels if first_conv is not None else 3
            input_shape = (channels, 224, 224)
        if len(input_shape) != 3:
            raise ValueError(f'input_shape must be (C, H, W), got '
                             f'{tuple(input_shape)}.')
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn((2, *input_shape), generator=generator)
        height, width = input_shape[1:]
        meta = dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width),
            batch_input_shape=(height, width),
            input_size=(width, height),
            scale_factor=(1.0, 1.0))
        samples = [BaseDataElement(metainfo=meta) for _ in range(2)]
        return inputs, samples

    @staticmethod
    def _run(model: nn.Module, recorder: FeatureRecorder, inputs,
             data_samples, role: str) -> None:
        with recorder:
            try:
                model(inputs, data_samples, mode='tensor')
            except StopForward:
                pass
            except Exception as err:
                raise RuntimeError(
                    f'The build-time dry forward of the {role} failed '
                    f'({type(err).__name__}: {err}). Set `input_shape` of '
                    'DistillModel to an input size the model accepts.'
                ) from err

    def _dry_run(self, input_shape: Optional[Sequence[int]]) -> None:
        """One forward of every model: checks paths, sizes adapters and lazy
        losses, measures call counts and in-place modifications."""
        inputs, samples = self._dry_inputs(input_shape)
        was_training = self.student.training
        self.student.eval()
        records_T = {}
        with torch.no_grad(), torch.random.fork_rng():
            for name, teacher in self._teachers.items():
                recorder = self._teacher_recorders[name]
                self._run(teacher, recorder, inputs, samples,
                          f'teacher {name!r}')
                self._warn_clones(recorder, f'teacher {name!r}')
                counts = recorder.call_counts()
                stop_after = {}
                for entry in self._entries:
                    if entry.teacher_name != name:
                        continue
                    for spec in entry.teacher_specs:
                        records_T[entry.name] = recorder.get(entry.name)
                        stop_after[id(spec)] = counts[id(spec)] if \
                            spec.needs_all_calls else spec.call + 1
                recorder.stop_after = stop_after
            self._run(self.student, self._student_recorder, inputs, samples,
                      'student')
            self._warn_clones(self._student_recorder, 'student')
            for entry in self._entries:
                feats_S = self._student_recorder.get(entry.name)
                feats_T = records_T[entry.name]
                adapter = build_entry_adapter(
                    entry.adapter_cfg, entry.name,
                    [f.shape for f in feats_S], [f.shape for f in feats_T],
                    getattr(self.distill_losses[entry.name],
                            'channel_affine_invariant', False))
                if not adapter.is_identity:
                    self.adapters[entry.name] = adapter
                    feats_S = adapter(feats_S, feats_T)
                try:
                    self._call_loss(entry, feats_S, feats_T,
                                    torch.zeros(2, dtype=torch.long), samples)
                except Exception as err:
                    raise RuntimeError(
                        f'Distill entry {entry.name!r}: the loss '
                        f'{type(self.distill_losses[entry.name]).__name__} '
                        'failed on the dry-run features (student shapes '
                        f'{[tuple(f.shape) for f in feats_S]}, teacher '
                        f'{[tuple(f.shape) for f in feats_T]}): {err}'
                    ) from err
        self.student.train(was_training)

    @staticmethod
    def _warn_clones(recorder: FeatureRecorder, role: str) -> None:
        switched = recorder.mark_inplace_clones()
        if switched:
            print_log(
                f'{role}: {switched} are modified in place after being '
                'recorded; they are cloned when recorded.',
                logger='current')

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
    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor',
                teacher_inputs: Optional[Dict[str, torch.Tensor]] = None):
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
        raise ValueError(f'Invalid mode {mode!r}; valid: loss, predict, '
                         'tensor.')

    def loss(self,
             inputs: torch.Tensor,
             data_samples: Optional[list],
             teacher_inputs: Optional[Dict[str, torch.Tensor]] = None
             ) -> Dict[str, torch.Tensor]:
        """Student task losses plus weighted distillation losses."""
        self._checkpoint_writer.start()
        factors = {e.name: e.schedule.factor() for e in self._entries}
        records_T = {}
        for name, teacher in self._teachers.items():
            entries = [
                e for e in self._entries
                if e.teacher_name == name and factors[e.name] > 0
            ]
            if not entries:
                continue
            recorder = self._teacher_recorders[name]
            teacher_in = (teacher_inputs or {}).get(name, inputs)
            dtype = self._teacher_dtypes[name]
            # without a precision of its own the teacher follows the
            # surrounding autocast (AMP training) like the student
            precision = torch.autocast(teacher_in.device.type, dtype=dtype) \
                if dtype is not None else contextlib.nullcontext()
            with torch.no_grad(), recorder, precision:
                try:
                    teacher(teacher_in, data_samples, mode='tensor')
                except StopForward:
                    pass
            for entry in entries:
                records_T[entry.name] = recorder.get(entry.name)

        with self._student_recorder:
            student_losses = self.student(inputs, data_samples, mode='loss')
        losses = {}
        for key, value in student_losses.items():
            if 'loss' in key and self.student_loss_weight != 1.0:
                value = [v * self.student_loss_weight for v in value] \
                    if isinstance(value, (list, tuple)) else \
                    value * self.student_loss_weight
            # mmengine logs the total as 'loss': keep a student loss of that
            # name (mmpretrain's) visible under its own name
            losses['loss_student' if key == 'loss' else key] = value

        gt_labels = None
        for entry in self._entries:
            if entry.loss_key in losses:
                raise KeyError(f'Distill entry {entry.name!r}: its loss key '
                               f'{entry.loss_key!r} clashes with a student '
                               'loss; rename the entry.')
            factor = factors[entry.name]
            if factor == 0:
                losses[entry.loss_key] = self._zero_loss(entry, inputs)
                continue
            feats_S = self._student_recorder.get(entry.name)
            self._check_student_grad(entry, feats_S)
            feats_T = records_T[entry.name]
            if entry.name in self.adapters:
                feats_S = self.adapters[entry.name](feats_S, feats_T)
            if gt_labels is None and 'gt_labels' in \
                    self._loss_kwargs[entry.name]:
                gt_labels = self._gt_labels(data_samples, entry)
            value = self._call_loss(entry, feats_S, feats_T, gt_labels,
                                    data_samples)
            if isinstance(value, dict):
                for term, term_value in value.items():
                    key = f'{entry.loss_key}_{term}'
                    if key in losses:
                        raise KeyError(f'Distill entry {entry.name!r}: its '
                                       f'loss term {key!r} clashes with '
                                       'another loss; rename the entry.')
                    losses[key] = factor * term_value
            else:
                losses[entry.loss_key] = factor * value
        # the recorded tensors live on in the autograd graph only
        self._student_recorder.clear()
        for recorder in self._teacher_recorders.values():
            recorder.clear()
        return losses

    def _call_loss(self, entry: _Entry, feats_S: List[torch.Tensor],
                   feats_T: List[torch.Tensor], gt_labels, data_samples):
        kwargs = {}
        accepted = self._loss_kwargs[entry.name]
        if 'gt_labels' in accepted and gt_labels is not None:
            kwargs['gt_labels'] = gt_labels
        if 'data_samples' in accepted:
            kwargs['data_samples'] = data_samples
        if 'student_model' in accepted:
            kwargs['student_model'] = self.student
        if 'teacher_model' in accepted:
            kwargs['teacher_model'] = self._teachers[entry.teacher_name]
        # Distillation losses run in float32 outside autocast: softmax with
        # temperatures and feature statistics are fragile in fp16/bf16.
        feats_S = [_to_float32(f) for f in feats_S]
        feats_T = [_to_float32(f) for f in feats_T]
        loss = self.distill_losses[entry.name]
        with torch.autocast(feats_S[0].device.type, enabled=False):
            if len(feats_S) == 1:
                return loss(feats_S[0], feats_T[0], **kwargs)
            return loss(feats_S, feats_T, **kwargs)

    @staticmethod
    def _gt_labels(data_samples, entry: _Entry) -> torch.Tensor:
        if not data_samples or not all(
                hasattr(s, 'gt_label') for s in data_samples):
            raise ValueError(
                f'Distill entry {entry.name!r}: its loss needs gt_labels, but '
                'the data samples have no `gt_label` (classification data '
                'samples do).')
        return torch.cat([s.gt_label.view(-1)[:1] for s in data_samples])

    def _zero_loss(self, entry: _Entry, inputs: torch.Tensor):
        """A zero that still touches the entry's trainable parameters, so
        DDP without ``find_unused_parameters`` sees them used."""
        params = [
            p for module in (self.adapters[entry.name]
                             if entry.name in self.adapters else None,
                             self.distill_losses[entry.name])
            if module is not None for p in module.parameters()
            if p.requires_grad
        ]
        if not params:
            return inputs.new_zeros(())
        return sum(p.sum() for p in params) * 0.0

    def _check_student_grad(self, entry: _Entry,
                            feats_S: List[torch.Tensor]) -> None:
        if entry.name in self._grad_warned or not torch.is_grad_enabled():
            return
        if not all(f.requires_grad for f in feats_S):
            self._grad_warned.add(entry.name)
            print_log(
                f'Distill entry {entry.name!r}: a recorded student tensor '
                'does not require grad, so the distillation loss cannot train '
                'the student through it (recorded inside a reentrant '
                'gradient-checkpointed block, or an input?). Record the '
                'enclosing module instead.',
                logger='current',
                level=30)

    # ---------------------------------------------------------- checkpoints
    def state_dict(self, *args, **kwargs):
        """The state of student, adapters and losses (never the teachers).

        Also writes the plain student checkpoint when the runner is saving a
        checkpoint (see :mod:`.student_checkpoint`).
        """
        state = super().state_dict(*args, **kwargs)
        self._checkpoint_writer.on_state_dict(self.student)
        return state

    def _map_plain_keys(self, module, state_dict, prefix, local_metadata,
                        strict, missing_keys, unexpected_keys,
                        error_msgs) -> None:
        """Map keys of a plain student checkpoint (``backbone.x``) to
        ``student.backbone.x`` so ``load_from`` initialises the student."""
        own_roots = {name + '.' for name, _ in self.named_children()}
        student_keys = set(self.student.state_dict(keep_vars=True))
        for key in list(state_dict):
            if not key.startswith(prefix):
                continue
            rel = key[len(prefix):]
            if any(rel.startswith(r) for r in own_roots):
                continue
            if rel in student_keys:
                state_dict[f'{prefix}student.{rel}'] = state_dict.pop(key)
