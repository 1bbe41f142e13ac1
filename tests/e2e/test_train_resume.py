"""Real training through our tools/train.py and each downstream's stock tools/train.py.

For every downstream a small model trains a few iterations on real (Fashion-MNIST)
or generated-from-real (scenes) data, evaluates with the downstream metric, saves
checkpoints, and a second run resumes from the middle checkpoint with the *other*
tool: the resumed run's losses must equal the uninterrupted run's (fixed seed, CPU,
random augmentations and dropout removed for these runs: mmengine re-seeds at
resume but does not checkpoint the RNG state).
"""

import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool

from .runs import OUR_TRAIN, REPO, free_port, metrics, run_tool, train_losses

pytestmark = pytest.mark.slow

# downstream -> (config, metric key, scene task or None for Fashion-MNIST)
CASES = {
    'mmpretrain': (
        'configs/baselines/mmpretrain/fmnist_student.py',
        'accuracy/top1',
        None,
    ),
    'mmdet': ('configs/baselines/mmdet/gfl_r18-w16_scenes.py', 'coco/bbox_mAP', 'det'),
    'mmseg': ('configs/baselines/mmseg/fcn_r18-w16_scenes.py', 'mIoU', 'seg'),
    'mmpose': (
        'configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
        'coco/AP',
        'pose',
    ),
}
MAX_ITERS, CKPT_EVERY = 4, 2


@pytest.fixture(scope='module')
def scenes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('scenes')
    for task in ('det', 'seg', 'pose'):
        generate_scenes(task, str(root / task), split='small')
    return str(root)


def _deterministic(pipeline):
    """The pipeline without its random augmentations."""
    return [
        t
        for t in pipeline
        if not t['type'].startswith('Random') and t['type'] != 'PhotoMetricDistortion'
    ]


def small_config(downstream: str, folder, scenes_root: str) -> str:
    """A copy of the downstream's config made small and deterministic."""
    config, _, task = CASES[downstream]
    cfg = Config.fromfile(config)
    if task is not None:
        point_config_at_scenes(cfg, osp.join(scenes_root, task))
    shrink_data(cfg, 4, dict(train=64), splits=['train'])
    shrink_data(cfg, 8, dict(val=100), splits=['val'])
    dataset = cfg.train_dataloader.dataset
    dataset.pipeline = _deterministic(dataset.pipeline)
    # dropout draws from torch's RNG, whose state mmengine does not checkpoint
    for head in ('decode_head', 'auxiliary_head'):
        if cfg.model.get(head):
            cfg.model[head].dropout_ratio = 0.0
    shorten_schedule(
        cfg,
        iters=MAX_ITERS,
        log_interval=1,
        param_scheduler=[],
        interval=CKPT_EVERY,
        max_keep_ckpts=-1,
    )
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)
    path = str(folder / f'small_{downstream}.py')
    cfg.dump(path)
    return path


@pytest.mark.parametrize('downstream', sorted(CASES))
def test_train_evaluate_checkpoint_resume(downstream, tmp_path, scenes_root):
    _, metric, _ = CASES[downstream]
    config = small_config(downstream, tmp_path, scenes_root)
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')

    # 1) uninterrupted run with our tool, a checkpoint every CKPT_EVERY iters
    run_tool(OUR_TRAIN, [config, '--work-dir', full])
    for it in range(CKPT_EVERY, MAX_ITERS + 1, CKPT_EVERY):
        assert osp.isfile(osp.join(full, f'iter_{it}.pth'))
    scores = metrics(full, metric)
    assert len(scores) == 1, f'expected one evaluation of {metric}'

    # 2) the downstream's stock tool auto-resumes (`--resume`, the flag every
    #    downstream tool accepts) from the middle checkpoint
    middle = f'iter_{CKPT_EVERY}.pth'
    shutil.copytree(
        full,
        resumed,
        ignore=lambda d, names: [
            n for n in names if n != middle and not n.endswith('.py')
        ],
    )
    with open(osp.join(resumed, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(resumed, middle))
    run_tool(stock_tool(downstream), [config, '--work-dir', resumed, '--resume'])

    before, after = train_losses(full), train_losses(resumed)
    assert sorted(before) == list(range(1, MAX_ITERS + 1))
    assert sorted(after) == list(range(CKPT_EVERY + 1, MAX_ITERS + 1))
    for step, loss in after.items():
        assert loss == pytest.approx(before[step], rel=1e-5, abs=1e-6), (
            f'iteration {step}: resumed loss {loss} != uninterrupted {before[step]}'
        )
    assert metrics(resumed, metric)[-1] == pytest.approx(scores[-1], abs=1e-4)
    assert osp.isfile(osp.join(resumed, f'iter_{MAX_ITERS}.pth'))


def test_amp_trains_on_cpu_with_bfloat16(tmp_path, scenes_root):
    """``--amp`` (AmpOptimWrapper) trains on a CPU-only machine: bf16 autocast."""
    work_dir = str(tmp_path / 'amp')
    proc = run_tool(
        OUR_TRAIN,
        [
            small_config('mmpretrain', tmp_path, scenes_root),
            '--work-dir',
            work_dir,
            '--amp',
        ],
    )
    assert 'AMP autocasts to torch.bfloat16 on the CPU' in proc.stdout + proc.stderr
    losses = train_losses(work_dir)
    assert len(losses) == MAX_ITERS and all(v == v for v in losses.values())
    assert metrics(work_dir, 'accuracy/top1')


def test_dist_train_two_processes_on_cpu(tmp_path, scenes_root):
    """``tools/dist_train.sh CONFIG 2`` trains with 2 gloo processes."""
    work_dir = str(tmp_path / 'ddp')
    config = small_config('mmpretrain', tmp_path, scenes_root)
    out = subprocess.run(
        [
            'bash',
            osp.join(REPO, 'tools', 'dist_train.sh'),
            config,
            '2',
            '--work-dir',
            work_dir,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            'PATH': osp.dirname(sys.executable) + ':/usr/bin:/bin',
            'PYTHON': sys.executable,
            'OMP_NUM_THREADS': '1',
            'PORT': str(free_port()),
        },
    )
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stdout + out.stderr
    assert 'using the gloo backend' in log
    assert 'Distributed training: True' in log or 'world_size: 2' in log
    assert osp.isfile(osp.join(work_dir, f'iter_{MAX_ITERS}.pth'))
