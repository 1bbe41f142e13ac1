"""The bookkeeping of benchmarks/decompose_scenes_det.py: the table pairs each
decomposed run with the control of its seed, states the FLOPs of backbone and
model and the mAP before and after the fine-tune; the fine-tune config puts the
decomposed student under the trained teacher."""

import argparse

from mmengine.config import Config

from ..e2e.runs import load_script

bench = load_script('benchmarks', 'decompose_scenes_det.py')


def _run(arm, seed, value, decomposition=None):
    return dict(
        arm=arm,
        seed=seed,
        iters=800,
        map=value,
        minutes=3.0,
        load_before=1.0,
        load_after=2.0,
        decomposition=decomposition,
    )


def test_table_pairs_seeds_with_the_control():
    args = argparse.Namespace(
        checkpoint='ckpt.pth', backbone_ratio=0.5, iters=800, out='page.md'
    )
    svd = dict(selected_ratio=0.4805, ratio=0.8252, map_init=12.6)
    runs = [
        _run('none', 0, 20.0),
        _run('none', 1, 19.0),
        _run('svd', 1, 18.5, svd),  # seed 1: -0.5 against its control
        _run('svd', 0, 18.0, svd),  # seed 0: -2.0
    ]
    text = bench.table(runs, 18.7, args)
    assert (
        '| undecomposed (control) | 1.00 | 1.00 | 18.7 | 19.5 ± 0.7 |  | +0.8 |' in text
    )
    # mean 18.25, std 0.35; vs control mean(-2.0, -0.5) = -1.25; vs trained -0.45
    assert (
        '| channel SVD | 0.48 | 0.83 | 12.6 | 18.2 ± 0.4 | -1.2 | -0.4 | 0, 1 | '
        '18.0 / 18.5 | 3.0 (1.0-2.0) |'
    ) in text
    assert '--seeds 0 1 --iters 800 --out page.md`' in text


def test_finetune_config_teaches_the_decomposed_student():
    cfg = Config.fromfile(bench.KD_CONFIG)
    assert cfg.model.type == 'DistillModel'
    assert cfg.model.teacher.checkpoint == cfg.load_from == bench.CHECKPOINT
    assert cfg.model.teacher.config.endswith(bench.CONFIG.split('configs/')[1])
    assert cfg.model.distill.fpn.loss.type == 'PKDLoss'
    assert cfg.train_cfg.max_iters == 800 and cfg.optim_wrapper.optimizer.lr == 2e-4
