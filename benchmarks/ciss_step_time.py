"""Train-step time of DKD against fine-tuning + the frozen previous model.

    python benchmarks/ciss_step_time.py --iters 30 --out docs/incremental/ciss.md

The issue's goal: a DKD step <= 1.1 x (fine-tuning step + previous-model
inference). One process builds, from the scenes 6-2-2 step-1 config
(``configs/incremental/mmseg/dkd_fcn_r18-w16_scenes-6-2-2_step1.py``, FCN
R-18 w16, batch 4, 128 x 128 crops):

* ``dkd``: the step-1 DKD model after loading a step-0 state (so it holds
  the frozen previous model and the aux-initialised new head; weights are
  random, which does not change the cost);
* ``finetune``: the same model with the KD weights 0 (fine-tuning: no
  previous-model forward), from the same state;
* ``teacher``: the previous-model outputs DKD distils from
  (``_teacher_outputs``: features, logits at input size, W+ / W- terms)
  under ``no_grad``;
* ``pair``: ``teacher`` then a ``finetune`` step in one timed call;
* ``plain``: mmseg's ``EncoderDecoder`` of the same backbone and FCN head
  with its cross-entropy over background + the 8 classes seen at step 1
  (the segmentor without the incremental heads).

Steps are forward, loss, backward and the config's optimizer (AdamW with the
step-1 parameter groups) on one preprocessed real batch of the step-1 train
set; the modes alternate iteration by iteration (round robin) in one process,
with ``torch.set_flush_denormal(True)`` and the malloc settings of
``distill_overhead.py`` (the script re-executes itself with them). Ratios of
medians: ``dkd / pair`` (the goal) and ``dkd / (finetune + teacher)``
(timed apart). The load average before and after is recorded; the run
refuses to start on a machine busier than its cores (``--allow-loaded``).
With ``--out`` the table replaces the ``ciss_step_time`` block of the page.
Needs ``data/scenes/seg_bench`` (``python tools/generate_scenes.py --task seg
--split bench``).
"""

import argparse
import copy
import logging
import os
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from distill_overhead import MALLOC_ENV, _step  # noqa: E402
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, add_load_argument, interleaved_ms  # noqa: E402

CONFIGS = osp.join(ROOT, 'configs', 'incremental', 'mmseg')
STEP0 = osp.join(CONFIGS, 'dkd_fcn_r18-w16_scenes-6-2-2_step0.py')
STEP1 = osp.join(CONFIGS, 'dkd_fcn_r18-w16_scenes-6-2-2_step1.py')
KD_OFF = dict(kd=0.0, dkd_pos=0.0, dkd_neg=0.0)


def build(model_cfg: dict, seed: int = 0):
    """Build a model in the mmseg scope with a fixed initialisation."""
    from mmengine.registry import DefaultScope

    from mmcompress.registry import MODELS

    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(copy.deepcopy(model_cfg))


def setup(data_root=None):
    """The timed modes' models, optimizers and one preprocessed batch.

    Args:
        data_root (str, optional): Scenes root to read the batch from instead
            of the config's ``data/scenes/seg_bench``.

    Returns:
        tuple: ``{mode: (model, optimizer)}`` and the preprocessed batch.
    """
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmcompress  # noqa: F401  (registers the incremental classes)
    from mmcompress.datasets.scenes import point_config_at_scenes

    cfg = Config.fromfile(STEP1)
    if data_root:
        point_config_at_scenes(cfg, data_root)
    init_default_scope('mmseg')
    # the optimizer builder logs every parameter's group
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    loader = copy.deepcopy(cfg.train_dataloader)
    loader.update(num_workers=0, persistent_workers=False)
    raw = next(iter(Runner.build_dataloader(loader, seed=0)))
    state = build(Config.fromfile(STEP0).model.to_dict()).state_dict()
    models = {}
    for mode, weights in (('dkd', {}), ('finetune', KD_OFF)):
        model_cfg = cfg.model.to_dict()
        model_cfg['loss_weights'] = dict(model_cfg['loss_weights'], **weights)
        model = build(model_cfg)
        model.load_state_dict(copy.deepcopy(state))
        models[mode] = model
    plain_cfg = {
        k: v
        for k, v in cfg.model.to_dict().items()
        if k
        not in ('split', 'num_classes', 'step', 'head_type', 'loss_weights', 'type')
    }
    plain_cfg['type'] = 'EncoderDecoder'
    plain_cfg['decode_head'] = dict(plain_cfg['decode_head'], num_classes=9)
    models['plain'] = build(plain_cfg)
    batch = models['dkd'].data_preprocessor(raw, True)
    runs = {}
    for mode, model in models.items():
        model.train()
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        runs[mode] = (model, optim.optimizer)
    return runs, batch


def run_timing(iters: int, warmup: int, data_root=None) -> dict:
    """Median milliseconds of every mode, modes alternating (round robin)."""
    runs, data = setup(data_root)
    dkd, finetune = runs['dkd'][0], runs['finetune'][0]

    def teacher():
        dkd._teacher_outputs(data['inputs'])

    def pair():
        teacher()
        _step(finetune, data, runs['finetune'][1])

    fns = dict(
        dkd=lambda: _step(dkd, data, runs['dkd'][1]),
        pair=pair,
        finetune=lambda: _step(finetune, data, runs['finetune'][1]),
        teacher=teacher,
        plain=lambda: _step(runs['plain'][0], data, runs['plain'][1]),
    )
    ms = interleaved_ms(fns, iters, warmup)
    return dict(
        ms=ms,
        ratio=ms['dkd'] / ms['pair'],
        ratio_separate=ms['dkd'] / (ms['finetune'] + ms['teacher']),
        iters=iters,
        batch=tuple(data['inputs'].shape),
    )


def markdown(result: dict, args, load: LoadRecord) -> str:
    """The table, the goal's ratios, the command and the load."""
    ms = result['ms']
    lines = [
        f'Batch {"x".join(map(str, result["batch"]))}, {args.threads} thread(s), '
        f'median of {result["iters"]} round-robin iterations ({args.warmup} '
        'warm-up), denormals flushed.',
        '',
        '| mode | ms / step |',
        '|---|---|',
    ]
    lines += [f'| {key} | {value:.1f} |' for key, value in ms.items()]
    lines += [
        '',
        f'DKD step / (previous model + fine-tuning step, one call): '
        f'**{result["ratio"]:.3f}** (goal <= 1.1); timed apart: '
        f'{result["ratio_separate"]:.3f}; DKD / plain segmentor step: '
        f'{ms["dkd"] / ms["plain"]:.3f}.',
        '',
        'Command: `python benchmarks/ciss_step_time.py --iters '
        f'{args.iters} --warmup {args.warmup} --threads {args.threads} '
        '--out docs/incremental/ciss.md`',
        '',
        load.markdown(),
    ]
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', help='markdown page whose block is replaced')
    add_load_argument(parser)
    args = parser.parse_args()
    if any(os.environ.get(key) != value for key, value in MALLOC_ENV.items()):
        os.execve(
            sys.executable, [sys.executable] + sys.argv, dict(os.environ, **MALLOC_ENV)
        )
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    load = LoadRecord(args.allow_loaded, threads=args.threads)
    result = run_timing(args.iters, args.warmup)
    load.stop()
    text = markdown(result, args, load)
    print(text)
    if args.out:
        write_block(args.out, 'ciss_step_time', text)


if __name__ == '__main__':
    main()
