"""Overhead of ``DistillModel``: time and peak memory of a distillation step.

For each case (a distill config of ``configs/distill/``) one process builds

* the ``DistillModel`` of the config (teacher randomly initialised: weights
  do not change the cost),
* a separate student from the student config, and
* a reference teacher run of exactly the recorded parts, written by hand:
  ``teacher.extract_feat(inputs)`` when only backbone/neck are recorded,
  ``teacher(inputs, data_samples, mode='tensor')`` when head outputs are,

and times, interleaved iteration by iteration on one preprocessed real batch:
(a) a distillation training step (forward, backward, SGD step), (b) a
student-only training step, (c) the reference teacher inference under
``no_grad``, (d) (c) then (b) in one timed call. The ratio is
``median(a) / median(d)``; ``median(a) / (median(b) + median(c))`` is
reported too ("separate"): timed apart, each call starts from the caches
and allocator state the other left, which moved that ratio by up to 5 %
(below 1 for classification) on this CPU.

glibc's allocator hands large blocks back to the system when they are freed
and page-faults them in again on the next step; how often depends on the
order of allocations, which differs between the timed calls, and moved the
ratio by several percent between runs. The script therefore re-executes
itself with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set (see
:data:`MALLOC_ENV`; ``--system-malloc`` keeps the defaults), so every timed
call reuses its memory; all modes run under the same setting. (It also made
every step ~20 % faster on this CPU: worth setting for CPU training too.)

Peak memory (``--memory``): a child process per mode runs the steps and
reports its peak resident set size (CPU) or peak allocated memory (CUDA); the
KD peak is compared with the student-only peak + the teacher's weights.

The table replaces the block between ``<!-- distill_overhead:begin/end -->``
of ``--out`` (the notes around it are kept).

Usage::

    python benchmarks/distill_overhead.py --cases cls det-fpn det-head \
        det-fpn-zoo seg pose --iters 20 --memory --out docs/distill/overhead.md
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, add_load_argument  # noqa: E402

#: glibc malloc settings of the timing runs: blocks up to 32 MiB come from
#: the heap (not mmap) and the heap is never trimmed.
MALLOC_ENV = dict(
    MALLOC_MMAP_THRESHOLD_=str(32 * 2**20), MALLOC_TRIM_THRESHOLD_=str(2**32)
)

CASES = {
    'cls': dict(
        config='configs/distill/mmpretrain/kd_fmnist.py',
        reference='tensor',
        what='classification: KD on logits (Fashion-MNIST ResNet-18 '
        'w16 -> w8, batch 128)',
    ),
    'det-fpn': dict(
        config='configs/distill/mmdet/pkd_retinanet_r18-w32_to_w16_scenes.py',
        reference='feat',
        what='detection: PKD on 3 FPN levels (RetinaNet R-18 w32 -> w16, '
        'batch 8, 128x128)',
    ),
    'det-head': dict(
        config='configs/distill/mmdet/pkd_retinanet_r18-w32_to_w16_scenes.py',
        reference='tensor',
        distill=dict(
            cls=dict(
                student=dict(module='bbox_head', index=0),
                teacher=dict(module='bbox_head', index=0),
                loss=dict(type='ChannelWiseDivergenceLoss', tau=1.0, loss_weight=1.0),
            )
        ),
        what='detection: CWD on head class logits (RetinaNet R-18 w32 -> '
        'w16, batch 8, 128x128)',
    ),
    'det-fpn-zoo': dict(
        config='configs/distill/mmdet/cwd_retinanet_r101_to_r50_fpn_1x_coco.py',
        data=dict(
            config='configs/distill/mmdet/pkd_retinanet_r18-w32_to_w16_scenes.py',
            batch_size=2,
            image_size=512,
        ),
        reference='feat',
        iters=8,  # ~20 s per interleaved iteration on one CPU thread
        what='detection at model-zoo scale: CWD on 5 FPN levels (mmdet '
        'RetinaNet R-101 -> R-50, 256-channel FPNs, batch 2, 512x512 '
        'scenes)',
    ),
    'seg': dict(
        config='configs/distill/mmseg/cwd_fcn_r18-w32_to_w16_scenes.py',
        reference='tensor',
        what='segmentation: CWD on logits (FCN R-18 w32 -> w16, batch 8, 128x128)',
    ),
    'pose': dict(
        config='configs/distill/mmpose/heatmap_kd_r18-w32_to_w16_scenes.py',
        reference='tensor',
        what='pose: heatmap KD (top-down R-18 w32 -> w16, batch 32, 64x64)',
    ),
}


def _train_loader(case: dict, cfg):
    """The train dataloader config of a case: its config's, or (for a
    COCO recipe, whose data is not installed here) the scenes loader of
    ``case['data']['config']`` with the batch size and a square image size
    of ``case['data']``."""
    from mmengine.config import Config

    data = case.get('data')
    if data is None:
        loader = copy.deepcopy(cfg.train_dataloader)
    else:
        loader = copy.deepcopy(
            Config.fromfile(os.path.join(ROOT, data['config'])).train_dataloader
        )
        loader.batch_size = data['batch_size']
        for transform in loader.dataset.pipeline:
            if transform.type == 'Resize':
                transform.scale = (data['image_size'],) * 2
    loader.update(num_workers=0, persistent_workers=False)
    return loader


def _setup(case: dict, parts=('kd', 'student')):
    """Build DistillModel and/or a separate student, and preprocess one real
    batch for each. Returns a dict with the built parts and their batches.

    Teachers are randomly initialised (the checkpoint is dropped) and the
    ImageNet-pretrained init of model-zoo backbones is not run: weights do
    not change the cost."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.runner import Runner

    import mmcompress  # noqa: F401
    from mmcompress.distill.teacher import build_model, load_model_config
    from mmcompress.registry import MODELS

    cfg = Config.fromfile(os.path.join(ROOT, case['config']))
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model.to_dict())
    model_cfg['teacher']['checkpoint'] = None
    if (
        isinstance(model_cfg['teacher']['config'], str)
        and '::' in model_cfg['teacher']['config']
    ):
        teacher_cfg, _ = load_model_config(model_cfg['teacher']['config'], 'teacher')
        teacher_cfg.backbone.pop('init_cfg', None)
        model_cfg['teacher']['config'] = teacher_cfg
    if 'distill' in case:
        model_cfg['distill'] = case['distill']
    top_preprocessor = cfg.get('data_preprocessor')
    if top_preprocessor is not None:
        model_cfg.setdefault('data_preprocessor', top_preprocessor)
    raw = next(iter(Runner.build_dataloader(_train_loader(case, cfg), seed=0)))
    built = {}
    # Both students start from the same weights (DistillModel builds its
    # student first): data-dependent steps (OHEM's top-k, label assignment)
    # then cost the same in both.
    torch.manual_seed(0)
    if 'kd' in parts:
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            model = MODELS.build(model_cfg)
        built['kd'] = (model, model.data_preprocessor(raw, True))
    if 'student' in parts:
        student_cfg, scope = load_model_config(
            model_cfg['student']['config'], 'student'
        )
        if top_preprocessor is not None and scope is None:
            student_cfg.setdefault('data_preprocessor', top_preprocessor)
        torch.manual_seed(0)
        student = build_model(student_cfg, scope)
        built['student'] = (student, student.data_preprocessor(raw, True))
    return built


def _step(model, data: dict, optimizer) -> None:
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _teacher_reference(teacher, data: dict, reference: str) -> None:
    with torch.no_grad():
        if reference == 'feat':
            teacher.extract_feat(data['inputs'])
        else:
            teacher(data['inputs'], data['data_samples'], mode='tensor')


def _recorded_features(model, data: dict) -> Dict:
    """Recorded (student, teacher) tensors of every entry, for timing the
    distillation compute (adapters + losses, forward and backward) alone."""
    from mmcompress.distill import StopForward

    teacher = model.teachers['teacher']
    recorder_T = model._teacher_recorders['teacher']
    with torch.no_grad():
        with recorder_T:
            try:
                teacher(data['inputs'], data['data_samples'], mode='tensor')
            except StopForward:
                pass
        with model._student_recorder:
            model.student(data['inputs'], data['data_samples'], mode='loss')
    return {
        name: (
            [f.detach().requires_grad_() for f in model._student_recorder.get(name)],
            recorder_T.get(name),
        )
        for name in model.distill_losses
    }


def _distill_compute(model, feats: Dict, data: dict) -> None:
    samples = data['data_samples']
    labels = (
        torch.cat([s.gt_label for s in samples])
        if hasattr(samples[0], 'gt_label')
        else None
    )
    total = 0
    for entry in model._entries:
        feats_S, feats_T = feats[entry.name]
        if entry.name in model.adapters:
            feats_S = model.adapters[entry.name](feats_S, feats_T)
        total = total + model._call_loss(entry, feats_S, feats_T, labels, samples)
    total.backward()


def run_timing(name: str, iters: int, warmup: int, bf16_teacher: bool = False) -> Dict:
    """Time KD step, student step, teacher reference and the distillation
    compute alone, interleaved iteration by iteration; with
    ``bf16_teacher`` also the teacher reference under bf16 autocast and the
    KD step with the teacher's ``precision='bf16'``."""
    case = CASES[name]
    iters = min(iters, case.get('iters', iters))
    built = _setup(case)
    distill_model, data = built['kd']
    student, student_data = built['student']
    teacher = distill_model.teachers['teacher']
    distill_model.train()
    student.train()
    opt_kd = torch.optim.SGD(distill_model.parameters(), lr=1e-4)
    opt_s = torch.optim.SGD(student.parameters(), lr=1e-4)
    feats = _recorded_features(distill_model, data)

    def pair():
        _teacher_reference(teacher, data, case['reference'])
        _step(student, student_data, opt_s)

    runs = dict(
        kd=lambda: _step(distill_model, data, opt_kd),
        pair=pair,
        student=lambda: _step(student, student_data, opt_s),
        teacher=lambda: _teacher_reference(teacher, data, case['reference']),
        distill=lambda: _distill_compute(distill_model, feats, data),
    )
    if bf16_teacher:
        device = data['inputs'].device.type
        distill_bf16 = copy.copy(distill_model)  # shares every module
        distill_bf16._teacher_dtypes = dict(teacher=torch.bfloat16)

        def teacher_bf16():
            with torch.autocast(device, dtype=torch.bfloat16):
                _teacher_reference(teacher, data, case['reference'])

        runs.update(
            teacher_bf16=teacher_bf16, kd_bf16=lambda: _step(distill_bf16, data, opt_kd)
        )
    times = {key: [] for key in runs}
    for i in range(warmup + iters):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = (
        dict(
            teacher_bf16_ms=1000 * med['teacher_bf16'], kd_bf16_ms=1000 * med['kd_bf16']
        )
        if bf16_teacher
        else {}
    )
    return dict(
        **extra,
        case=name,
        what=case['what'],
        iters=iters,
        kd_ms=1000 * med['kd'],
        student_ms=1000 * med['student'],
        teacher_ms=1000 * med['teacher'],
        distill_ms=1000 * med['distill'],
        pair_ms=1000 * med['pair'],
        ratio=med['kd'] / med['pair'],
        ratio_framework=(med['kd'] - med['distill']) / med['pair'],
        ratio_separate=med['kd'] / (med['student'] + med['teacher']),
        teacher_mb=sum(p.numel() * p.element_size() for p in teacher.parameters())
        / 2**20,
    )


def _proc_status_mb(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def run_memory(name: str, mode: str, iters: int) -> Dict:
    """Peak memory of ``iters`` steps of one mode (in a fresh process).

    On CUDA: peak allocated memory. On CPU: the peak resident set size
    during the steps (the high-water mark is reset after set-up through
    ``/proc/self/clear_refs``) and its rise over the resident size before
    the steps (activations, gradients, optimizer state).
    """
    import gc

    model, batch = _setup(CASES[name], parts=(mode,))[mode]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        before = _proc_status_mb('VmRSS')
    for _ in range(iters):
        _step(model, batch, optimizer)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else _proc_status_mb('VmHWM')
    )
    return dict(peak_mb=peak, rise_mb=peak - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--memory',
        action='store_true',
        help='also measure peak memory (child processes)',
    )
    parser.add_argument(
        '--bf16-teacher',
        action='store_true',
        help="also time the teacher with precision='bf16'",
    )
    parser.add_argument('--out', help='markdown file to write the table to')
    parser.add_argument(
        '--system-malloc',
        action='store_true',
        help='keep the default glibc malloc settings',
    )
    parser.add_argument(
        '--child', nargs=2, metavar=('CASE', 'MODE'), help=argparse.SUPPRESS
    )
    add_load_argument(parser)
    args = parser.parse_args()
    if not args.system_malloc and any(
        os.environ.get(key) != value for key, value in MALLOC_ENV.items()
    ):
        os.execve(
            sys.executable, [sys.executable] + sys.argv, dict(os.environ, **MALLOC_ENV)
        )
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_memory(*args.child, iters=3)))
        return
    load = LoadRecord(args.allow_loaded)
    rows = []
    for name in args.cases:
        row = run_timing(name, args.iters, args.warmup, args.bf16_teacher)
        if args.memory:
            for mode in ('kd', 'student'):
                out = (
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            '--threads',
                            str(args.threads),
                            '--child',
                            name,
                            mode,
                        ]
                        + (['--system-malloc'] if args.system_malloc else []),
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=ROOT,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                result = json.loads(out)
                row[f'{mode}_peak_mb'] = result['peak_mb']
                row[f'{mode}_rise_mb'] = result['rise_mb']
        rows.append(row)
        print(json.dumps(row), flush=True)
    load.stop()
    print(load.markdown())
    if args.out:
        write_table(rows, args, load)


def write_table(rows, args, load: LoadRecord) -> None:
    """Write the results as a markdown table with the reproducing command.

    Args:
        rows (list[dict]): One timing row per case.
        args (Namespace): The command line (settings and ``--out``).
        load (LoadRecord): The machine's load around the run.
    """
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f'CPU, {args.threads} thread(s)'
    )
    cmd = (
        'python benchmarks/distill_overhead.py --cases '
        + ' '.join(args.cases)
        + f' --iters {args.iters} --threads {args.threads}'
        + (' --memory' if args.memory else '')
        + (' --bf16-teacher' if args.bf16_teacher else '')
        + (' --system-malloc' if args.system_malloc else '')
        + (' --allow-loaded' if args.allow_loaded else '')
        + f' --out {args.out}'
    )
    memory_head = (
        (' KD peak / rise (MB) | student peak / rise (MB) | teacher weights (MB) |')
        if args.memory
        else ''
    )
    lines = [
        'KD training step time divided by (student-only training step + the '
        "teacher's inference of the recorded parts, written by hand), "
        'measured in one run, interleaved, medians of the given number of '
        f'iterations on one real batch; device: {device}, glibc malloc '
        + (
            'defaults'
            if args.system_malloc
            else 'with ' + ', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())
        )
        + '. Goal: <= 1.02. '
        '"ratio" divides by one timed call that runs the teacher reference '
        'and then the student step (the order of the KD step, so caches and '
        'the allocator see the same sequence); "ratio, separate" divides by '
        'the sum of their separately timed medians.',
        '',
        '"distill compute" is the adapters + distillation losses alone '
        '(forward and backward on recorded features); "ratio w/o distill '
        'compute" subtracts it from the KD step, leaving what the framework '
        'adds (recording, the cut-short teacher forward, bookkeeping). '
        'Memory: peak resident set during the steps / its rise over the '
        'resident set before them (CPU), or peak allocated (CUDA).',
        '',
        f'Command: `{cmd}`',
        '',
        load.markdown(),
        '',
        '| case | iters | KD step (ms) | student step (ms) | teacher ref. (ms) | '
        'teacher ref. + student step (ms) | distill compute (ms) | ratio | '
        'ratio w/o distill compute | ratio, separate |' + memory_head,
        '|---|---|---|---|---|---|---|---|---|---|'
        + ('---|---|---|' if args.memory else ''),
    ]
    for r in rows:
        line = (
            f'| {r["what"]} | {r["iters"]} | {r["kd_ms"]:.1f} | '
            f'{r["student_ms"]:.1f} '
            f'| {r["teacher_ms"]:.1f} | {r["pair_ms"]:.1f} '
            f'| {r["distill_ms"]:.1f} | {r["ratio"]:.3f} '
            f'| {r["ratio_framework"]:.3f} | {r["ratio_separate"]:.3f} |'
        )
        if args.memory:
            line += (
                f' {r["kd_peak_mb"]:.0f} / {r["kd_rise_mb"]:.0f} '
                f'| {r["student_peak_mb"]:.0f} / '
                f'{r["student_rise_mb"]:.0f} | {r["teacher_mb"]:.1f} |'
            )
        lines.append(line)
    if args.bf16_teacher:
        lines += [
            '',
            "## Reduced-precision teacher (`precision='bf16'`)",
            '',
            "The same cases with the teacher's forward under bf16 autocast "
            "(`teacher=dict(..., precision='bf16')`), timed in the same "
            'interleaved run.',
            '',
            '| case | teacher ref. fp32 (ms) | teacher ref. bf16 (ms) | '
            'teacher speed-up | KD step, fp32 teacher (ms) | KD step, bf16 '
            'teacher (ms) | KD step speed-up |',
            '|---|---|---|---|---|---|---|',
        ]
        for r in rows:
            lines.append(
                f'| {r["what"]} | {r["teacher_ms"]:.1f} | '
                f'{r["teacher_bf16_ms"]:.1f} | '
                f'{r["teacher_ms"] / r["teacher_bf16_ms"]:.2f}x | '
                f'{r["kd_ms"]:.1f} | {r["kd_bf16_ms"]:.1f} | '
                f'{r["kd_ms"] / r["kd_bf16_ms"]:.2f}x |'
            )
    write_block(args.out, 'distill_overhead', '\n'.join(lines))


if __name__ == '__main__':
    main()
