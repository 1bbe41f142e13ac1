"""Fit a post-hoc temperature on a held-out split of a trained classifier.

Usage::

    python tools/calibrate_temperature.py CONFIG CHECKPOINT \
        [--fit-split val] [--eval-split test] [--module head] [--work-dir DIR]

The logits are the output of ``--module`` (the classification head by default;
for a ``DistillModel`` config the student's, ``student.head``) captured while the
model runs its normal ``test_step`` on the ``--fit-split`` dataloader
(``val_dataloader`` by default). The temperature minimising the NLL
(LBFGS, within ``TEMPERATURE_BOUNDS``; warnings for a split under
``MIN_FIT_SAMPLES`` samples or a clamped fit) is fitted there;
ECE/AECE/classwise ECE/NLL/OE/UE before and after are reported on the fit
split and on ``--eval-split`` (``test_dataloader``) when the config has it.
Written to the work dir:

- ``temperature.json``: the temperature and every number;
- ``<config name>_temperature.py``: the config plus
  ``TemperatureScalingHook(temperature=T)`` in ``custom_hooks``, to evaluate
  with the stock ``tools/test.py <that config> CHECKPOINT``;
- reliability diagrams before/after for each split.
"""

import argparse
import json
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmcompress.calibrate import (
    bin_statistics,
    calibration_report,
    collect_logits,
    equal_width_edges,
    find_logits_module,
    fit_temperature,
)
from mmcompress.calibrate.functional import top_label
from mmcompress.calibrate.reliability_diagram import (
    draw_reliability_diagram,
    save_image,
)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Fit a post-hoc temperature on a held-out split'
    )
    parser.add_argument('config', help='config of the trained model')
    parser.add_argument('checkpoint', help='checkpoint of the trained model')
    parser.add_argument(
        '--fit-split',
        default='val',
        choices=['val', 'test'],
        help='dataloader to fit the temperature on',
    )
    parser.add_argument(
        '--eval-split',
        default='test',
        choices=['val', 'test', 'none'],
        help='extra dataloader to report metrics on',
    )
    parser.add_argument(
        '--module',
        default='head',
        help='sub-module whose output are the (N, '
        "num_classes) logits: 'head' for mmpretrain "
        'classifiers (looked up in the student of a '
        "DistillModel), or e.g. 'head.fc'",
    )
    parser.add_argument('--num-bins', type=int, default=15)
    parser.add_argument('--work-dir', help='folder for the outputs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings (key=value)',
    )
    return parser.parse_args()


def report_split(name, logits, labels, temperature, num_bins, work_dir):
    """Metrics (in percent, NLL raw) before/after scaling, plus diagrams."""
    rows = {}
    for stage, scale in (('before', 1.0), ('after', temperature)):
        probs = (logits / scale).softmax(dim=1)
        report = calibration_report(probs, labels, num_bins)
        rows[stage] = {k: (v if k == 'nll' else 100 * v) for k, v in report.items()}
        stats = bin_statistics(*top_label(probs, labels), equal_width_edges(num_bins))
        save_image(
            draw_reliability_diagram(
                stats,
                report['ece'],
                title=f'{name} split, {stage} scaling (T={scale:.3f})',
            ),
            osp.join(work_dir, f'reliability_{name}_{stage}.png'),
        )
    return rows


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0] + '_temperature'
    )
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model.eval()

    splits = [args.fit_split]
    if args.eval_split not in ('none', args.fit_split) and cfg.get(
        f'{args.eval_split}_dataloader'
    ):
        splits.append(args.eval_split)
    module, _ = find_logits_module(model, args.module)
    if module != args.module:
        print(
            f'calibrating {module!r} ({type(model).__name__} predicts with its student)'
        )
    data = {
        split: collect_logits(
            model,
            Runner.build_dataloader(cfg[f'{split}_dataloader']),
            module,
            what=f'{split}_dataloader',
        )
        for split in splits
    }
    temperature = fit_temperature(*data[args.fit_split])
    results = dict(
        temperature=temperature,
        module=module,
        fit_split=args.fit_split,
        checkpoint=args.checkpoint,
        metrics={
            split: report_split(
                split, *data[split], temperature, args.num_bins, cfg.work_dir
            )
            for split in splits
        },
    )
    with open(osp.join(cfg.work_dir, 'temperature.json'), 'w') as f:
        json.dump(results, f, indent=2)

    calibrated = Config.fromfile(args.config)
    if args.cfg_options:
        calibrated.merge_from_dict(args.cfg_options)
    calibrated.custom_hooks = list(calibrated.get('custom_hooks', [])) + [
        dict(type='TemperatureScalingHook', temperature=temperature, module=module)
    ]
    config_out = osp.join(
        cfg.work_dir, osp.splitext(osp.basename(args.config))[0] + '_temperature.py'
    )
    calibrated.dump(config_out)

    print(f'fitted temperature on {args.fit_split}: {temperature:.4f}')
    print('| split | stage | accuracy | ECE | AECE | classwise ECE | NLL |')
    print('|---|---|---|---|---|---|---|')
    for split, stages in results['metrics'].items():
        for stage, m in stages.items():
            print(
                f'| {split} | {stage} | {m["accuracy"]:.2f} | '
                f'{m["ece"]:.2f} | {m["aece"]:.2f} | {m["cece"]:.2f} | '
                f'{m["nll"]:.4f} |'
            )
    print(f'config with the temperature hook: {config_out}')


if __name__ == '__main__':
    main()
