"""benchmarks/calibration.py --converged: the converged calibration configs
change only the loss of the converged student, the converged models are
measured from their checkpoints (the same predictions the test loop scores),
and the page block states the goal against the sampling floor."""

import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from ..e2e.runs import REPO, load_script

calibration = load_script('benchmarks', 'calibration.py')
fmnist_converged = load_script('benchmarks', 'fmnist_converged.py')

# what a calibration method may change in the converged student's config
LOSS_KEYS = (
    'type',
    'rank_loss',
    'num_mixup',
    'mixup_alpha',
    'mixed_bn_stats',
    'train_cfg',
)


def _config(model_key):
    return Config.fromfile(osp.join(REPO, fmnist_converged.CONFIGS[model_key]))


@pytest.mark.parametrize('method', ['mixup', 'mrl', 'mrl+bn', 'mrl-rawbn'])
def test_converged_configs_change_only_the_loss(method):
    student = _config('student').to_dict()
    cfg = _config(calibration.CONVERGED_MODELS[method]).to_dict()
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key] == student[key], key
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'randomness'):
        assert cfg.get(key) == student.get(key), key
    model, reference = dict(cfg['model']), dict(student['model'])
    for key in LOSS_KEYS:
        model.pop(key, None), reference.pop(key, None)
    head, reference_head = model.pop('head'), reference.pop('head')
    assert model == reference
    head.pop('loss'), reference_head.pop('loss')
    assert head == reference_head
    assert cfg['test_evaluator'][1]['type'] == 'ClsCalibrationMetric'


@pytest.mark.parametrize(
    'noaug, augmented',
    [('ce-noaug', 'ce'), ('mrl-rawbn-noaug', 'mrl-rawbn'), ('mrl-noaug', 'mrl')],
)
def test_noaug_configs_drop_only_the_augmentation(noaug, augmented):
    cfg = _config(calibration.CONVERGED_MODELS[noaug]).to_dict()
    reference = _config(calibration.CONVERGED_MODELS[augmented]).to_dict()
    pipeline = cfg['train_dataloader']['dataset'].pop('pipeline')
    reference_pipeline = reference['train_dataloader']['dataset'].pop('pipeline')
    assert pipeline == [dict(type='PackInputs')]
    assert [t['type'] for t in reference_pipeline] == [
        'RandomCrop',
        'RandomFlip',
        'PackInputs',
    ]
    for key in ('model', 'train_dataloader', 'optim_wrapper', 'param_scheduler'):
        assert cfg[key] == reference[key], key
    for key in ('train_cfg', 'randomness', 'test_dataloader', 'val_dataloader'):
        assert cfg.get(key) == reference.get(key), key


def test_short_benchmark_rejects_converged_only_methods(monkeypatch):
    monkeypatch.setattr(
        sys, 'argv', ['calibration.py', '--methods', 'ce', 'ce-noaug', '--seeds', '0']
    )
    with pytest.raises(SystemExit, match=r"\['ce-noaug'\] exist only with"):
        calibration.main()


@pytest.mark.parametrize(
    'model_key, bn_stats',
    [('student_rankmixup', 'batch'), ('student_rankmixup_rawbn', 'raw')],
)
def test_mrl_configs_are_the_official_cifar_setting(model_key, bn_stats):
    init_default_scope('mmpretrain')
    model = MODELS.build(_config(model_key).model)
    assert type(model).__name__ == 'RankMixupClassifier'
    assert (model.num_mixup, model.mixup_alpha) == (1, 2.0)
    assert (model.rank_loss.margin, model.rank_loss.loss_weight) == (2.0, 0.1)
    assert model.mixed_bn_stats == bn_stats
    assert _config(model_key).model.rank_loss.faithful_broadcast


def test_converged_rejects_methods_without_a_converged_config(monkeypatch):
    args = calibration.argparse.Namespace(
        methods=['ce', 'focal'], seeds=[0], out_dir='/nonexistent', from_json=False
    )
    valid = (
        r"\['ce', 'mixup', 'mrl', 'mrl\+bn', 'mrl-rawbn', 'ce-noaug', "
        r"'mrl-rawbn-noaug', 'mrl-noaug', 'mrl\+bn-noaug'\]"
    )
    with pytest.raises(SystemExit, match=valid + r"; got \['focal'\]"):
        calibration.main_converged(args)


def _record(method, seed, accuracy, ece, floor=0.005):
    report = dict(accuracy=accuracy, ece=ece, aece=ece, cece=ece / 2, nll=0.2)
    return dict(
        method=method,
        seed=seed,
        temperature=1.0,
        train_seconds=10.0,
        before=report,
        after=report,
        ece_floor=floor,
        checkpoint=f'work_dirs/{method}_s{seed}/epoch_15.pth',
        training='10 s in 1 chunk(s) on CPU, epochs 1-15',
    )


def test_converged_block_goal_and_floor(tmp_path):
    results = [
        _record('ce', 0, 0.92, 0.010),
        _record('ce', 1, 0.93, 0.012),
        _record('mrl', 0, 0.915, 0.004),
        _record('mrl', 1, 0.92, 0.006),
    ]
    page = tmp_path / 'converged.md'
    page.write_text('# intro\n')
    calibration.write_converged_block(results, str(page))
    text = page.read_text()
    assert text.startswith('# intro\n')
    assert (
        'Command: `OMP_NUM_THREADS=1 python benchmarks/calibration.py '
        '--converged --seeds 0 1 --methods ce mrl`' in text
    )
    # ECE 0.5 / 1.1 = 0.45 <= 0.5, accuracy -0.75 pt: met
    mrl = calibration.METHODS['mrl'][0]
    assert f'| {mrl} | 0, 1 | 0.45 | -0.75 | yes |' in text
    assert '| CE | 92.50 ± 0.71 | 1.10 ± 0.14 | 0.50 ± 0.00 |' in text
    assert 'train time' not in text and 'epochs 1-15' in text
    # a method measured on fewer seeds gets its own command
    calibration.write_converged_block(
        results + [_record('mrl-rawbn', 0, 0.92, 0.005)], str(page)
    )
    assert (
        '--seeds 0 1 --methods ce mrl`; `OMP_NUM_THREADS=1 python '
        'benchmarks/calibration.py --converged --seeds 0 --methods mrl-rawbn`'
    ) in page.read_text()


def test_noaug_regime_has_its_own_block_and_reference(tmp_path):
    results = [
        _record('ce', 0, 0.92, 0.010),
        _record('ce-noaug', 0, 0.91, 0.040),
        _record('mrl-rawbn-noaug', 0, 0.905, 0.012),
    ]
    page = tmp_path / 'converged.md'
    page.write_text(
        '<!-- calibration_converged:begin -->\n<!-- calibration_converged:end -->\n'
        'between\n'
    )
    calibration.write_converged_block(results, str(page))
    text = page.read_text()
    augmented, noaug = text.split('between\n')
    assert 'no augmentation' not in augmented and '--methods ce`' in augmented
    assert '<!-- calibration_converged_noaug:begin -->' in noaug
    assert '--methods ce-noaug mrl-rawbn-noaug`' in noaug
    # against the no-augmentation CE: ECE 1.2 / 4.0 = 0.30, accuracy -0.50 pt
    mrl = calibration.METHODS['mrl-rawbn-noaug'][0]
    assert f'| {mrl} | 0 | 0.30 | -0.50 | yes |' in noaug
    assert '## Per-seed numbers, no augmentation' in noaug


def test_goal_compares_with_ce_on_the_same_seeds(tmp_path):
    # CE on seeds 0-1 (ECE 4.0 / 2.0 %), official MRL + BN on seed 0 only
    results = [
        _record('ce-noaug', 0, 0.91, 0.040),
        _record('ce-noaug', 1, 0.93, 0.020),
        _record('mrl+bn-noaug', 0, 0.905, 0.018),
        _record('mrl-rawbn-noaug', 0, 0.90, 0.030),
        _record('mrl-rawbn-noaug', 1, 0.92, 0.010),
    ]
    page = tmp_path / 'converged.md'
    calibration.write_converged_block(results, str(page))
    text = page.read_text()
    # seed 0 only: 1.8 / 4.0 = 0.45 (not 1.8 / 3.0 = 0.60), -0.50 pt
    mrl_bn = calibration.METHODS['mrl+bn-noaug'][0]
    assert f'| {mrl_bn} | 0 | 0.45 | -0.50 | yes |' in text
    # both seeds: 2.0 / 3.0 = 0.67, -1.00 pt
    rawbn = calibration.METHODS['mrl-rawbn-noaug'][0]
    assert f'| {rawbn} | 0, 1 | 0.67 | -1.00 | no |' in text


def test_converged_model_is_measured_from_its_checkpoint(tmp_path, monkeypatch):
    # an untrained student saved as the 'converged' checkpoint of seed 5
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(_config('student').model)
    checkpoint = tmp_path / 'epoch_15.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    record = dict(model='student', seed=5, checkpoint=str(checkpoint), chunks=[])
    monkeypatch.setattr(fmnist_converged, 'run', lambda model_key, seed: record)
    # calibration imports the script by name: give it the patched one
    monkeypatch.setitem(sys.modules, 'fmnist_converged', fmnist_converged)
    result, stats, ece = calibration.converged_one('ce', 5)
    assert result['checkpoint'] == str(checkpoint)
    assert 'not timed' in result['training']
    assert int(stats.counts.sum()) <= 10000 == stats.total
    assert ece == result['before']['ece']
    # the logits the benchmark captures give the test loop's top-1
    top1 = fmnist_converged.test_accuracy(
        fmnist_converged.CONFIGS['student'], str(checkpoint)
    )
    assert 100 * result['before']['accuracy'] == pytest.approx(top1, abs=1e-6)
    assert 0 < result['ece_floor'] < 0.05


def test_records_without_a_floor_keep_the_old_table():
    old = _record('ce', 0, 0.76, 0.12)
    del old['ece_floor']
    header, rule, row = calibration.summary_lines([old], ['ce'])[:3]
    assert 'floor' not in header and header.endswith('| train time / run (s) |')
    assert rule == '|---' * 10 + '|'
    assert row.endswith('| 1.00 ± 0.00 | 10 |')


def test_bn_reestimation_uses_the_training_images_not_the_weights():
    init_default_scope('mmpretrain')
    cfg = _config('student_rankmixup')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    bn = model.backbone.norm1
    bn.running_mean.fill_(5.0)
    model.eval()
    # ceil(10000 / 128) batches of the 55k train split
    assert calibration.reestimate_bn(model, cfg) == 79 * 128
    assert not model.training and bn.momentum == 0.1
    # seeded crops and flips: a second call gives the same statistics
    first = bn.running_var.clone()
    bn.running_var.fill_(3.0)
    calibration.reestimate_bn(model, cfg)
    torch.testing.assert_close(bn.running_var, first, rtol=0, atol=0)
    # the stem's statistics are those of its inputs: compare with the 5k
    # hold-out images (another sample of the same distribution, uncropped;
    # the crop padding moves the means by about 2 %)
    loader = Runner.build_dataloader(
        dict(cfg.val_dataloader, num_workers=0, persistent_workers=False)
    )
    with torch.no_grad():
        stem = [
            model.backbone.conv1(model.data_preprocessor(data, False)['inputs'])
            for data in loader
        ]
    reference = torch.cat(stem).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, reference, rtol=0.05, atol=0.5)
    for key, value in model.state_dict().items():
        if 'running' not in key and 'num_batches' not in key:
            torch.testing.assert_close(value, weights[key])


def test_adding_seeds_keeps_the_pages_diagram_seed(tmp_path, monkeypatch):
    # converged.json holds seed 0; measuring seed 1 must not redraw the
    # diagram the page labels as seed 0's
    known = [_record('ce', 0, 0.92, 0.010)]
    (tmp_path / 'converged.json').write_text(calibration.json.dumps(known))
    monkeypatch.setattr(
        calibration,
        'converged_one',
        lambda method, seed: (_record(method, seed, 0.93, 0.011), None, 0.011),
    )
    drawn = []
    monkeypatch.setattr(calibration, 'draw_reliability_diagram', lambda *a, **k: 0)
    monkeypatch.setattr(
        calibration, 'save_image', lambda image, path: drawn.append(path)
    )
    args = calibration.argparse.Namespace(
        methods=['ce'], seeds=[1], out_dir=str(tmp_path), from_json=False
    )
    calibration.main_converged(args)
    assert drawn == []
    args.seeds = [0, 1]
    calibration.main_converged(args)
    assert drawn == [str(tmp_path / 'reliability_converged_ce.png')]


@pytest.mark.parametrize('method', calibration.BN_REESTIMATED)
def test_bn_reestimated_methods_share_their_twins_model(method):
    twin = method.replace('+bn', '')
    # the same trained model (and config) as the method without re-estimation
    assert calibration.CONVERGED_MODELS[method] == calibration.CONVERGED_MODELS[twin]
    assert calibration.METHODS[method][1] == calibration.METHODS[twin][1]
    assert method in calibration.RANKMIXUP_METHODS
