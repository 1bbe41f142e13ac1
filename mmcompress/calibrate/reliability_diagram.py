"""Reliability diagrams: drawing, saving, and the hook that publishes them.

The calibration metrics only compute numbers; :class:`ReliabilityDiagramHook`
draws the diagram of each calibration metric after every validation/test epoch
and sends it to the runner's visualizer backends (and optionally to a folder)::

    custom_hooks = [dict(type='ReliabilityDiagramHook')]
"""

import os
import os.path as osp
import warnings
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from mmcompress.registry import HOOKS

from .functional import BinStatistics
from .metrics import CalibrationMetricBase
from .temperature import PHASES


def draw_reliability_diagram(
    stats: BinStatistics, ece: float, title: str = 'Reliability diagram'
) -> np.ndarray:
    """Draw a reliability diagram for equal-width bins.

    Top panel: accuracy per bin (blue bars), the gap to the mean confidence of
    the bin (red bars; above the accuracy bar for over-confidence, below it
    for under-confidence) and the diagonal of perfect calibration. Bottom
    panel: the share of samples per bin with the mean accuracy and mean
    confidence as vertical lines.

    Args:
        stats (BinStatistics): 1-D equal-width bin sums.
        ece (float): Expected calibration error as a fraction, shown in the
            title in percent.
        title (str): Title prefix.

    Returns:
        np.ndarray: RGB image, ``uint8`` of shape ``(H, W, 3)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_bins = stats.counts.numel()
    width = 1.0 / num_bins
    centers = (np.arange(num_bins) + 0.5) * width
    counts = stats.counts.numpy()
    filled = counts > 0
    accuracy = np.where(filled, stats.bin_accuracy.numpy(), 0.0)
    confidence = np.where(filled, stats.bin_confidence.numpy(), 0.0)

    figure = Figure(figsize=(5, 6.4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    top, bottom = figure.subplots(
        2, 1, gridspec_kw=dict(height_ratios=[3, 1]), sharex=True
    )
    top.bar(
        centers,
        accuracy,
        width=width,
        color='#3b6fb6',
        edgecolor='black',
        linewidth=0.6,
        label='accuracy',
    )
    top.bar(
        centers[filled],
        (confidence - accuracy)[filled],
        width=width,
        bottom=accuracy[filled],
        color='#e8474766',
        edgecolor='#b22222',
        hatch='//',
        linewidth=0.6,
        label='gap to confidence',
    )
    top.plot([0, 1], [0, 1], linestyle='--', color='gray', label='perfect calibration')
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel('accuracy')
    top.legend(loc='upper left', fontsize=8)
    top.set_title(
        f'{title}\nECE = {100 * ece:.2f}%  (n = {stats.total}, {num_bins} bins)',
        fontsize=10,
    )
    top.grid(alpha=0.3)

    share = counts / max(stats.total, 1)
    bottom.bar(
        centers, share, width=width, color='#7f7f7f', edgecolor='black', linewidth=0.6
    )
    total_in_bins = max(counts.sum(), 1)
    bottom.axvline(
        stats.accuracy_sums.sum().item() / total_in_bins,
        color='#3b6fb6',
        linestyle='-',
        label='mean accuracy',
    )
    bottom.axvline(
        stats.confidence_sums.sum().item() / total_in_bins,
        color='#b22222',
        linestyle='--',
        label='mean confidence',
    )
    bottom.set_xlabel('confidence')
    bottom.set_ylabel('share of samples')
    bottom.legend(loc='upper left', fontsize=8)
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_image(image: np.ndarray, path: str) -> str:
    """Save an RGB ``uint8`` image as PNG, creating the folder.

    Args:
        image (np.ndarray): RGB image.
        path (str): Output file.

    Returns:
        str: ``path``.
    """
    from matplotlib.image import imsave

    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    imsave(path, image)
    return path


def publish_reliability_diagram(
    stats: BinStatistics,
    ece: float,
    name: str,
    step: int,
    visualizer=None,
    out_dir: Optional[str] = None,
) -> Optional[str]:
    """Draw a diagram, send it to a visualizer and optionally save a PNG.

    The image, titled ``{name} (step {step})``, goes to every backend of
    ``visualizer`` as ``name`` at ``step`` (``LocalVisBackend`` writes
    ``<save_dir>/vis_data/vis_image/{name}_{step}.png``; TensorBoard/W&B log
    an image).

    Args:
        stats (BinStatistics): Equal-width bin sums.
        ece (float): ECE as a fraction.
        name (str): Image identifier (no slashes).
        step (int): Step the image is logged at.
        visualizer (Visualizer, optional): Receives the image. Defaults to
            None (no backend).
        out_dir (str, optional): Folder for an extra ``{name}_{step}.png``.

    Returns:
        str, optional: The PNG written to ``out_dir`` if any.
    """
    image = draw_reliability_diagram(stats, ece, title=f'{name} (step {step})')
    if visualizer is not None:
        visualizer.add_image(name, image, step=step)
    if out_dir is None:
        return None
    return save_image(image, osp.join(out_dir, f'{name}_{step}.png'))


@HOOKS.register_module()
class ReliabilityDiagramHook(Hook):
    """Draw a reliability diagram per calibration metric at each evaluation.

    After every validation/test epoch, each ``ClsCalibrationMetric`` /
    ``SegCalibrationMetric`` of that loop's evaluator gives the bin sums of the
    evaluation it just computed; the diagram, named
    ``{metric prefix}_reliability_{stage}`` (``calibration_reliability_val``
    by default), goes to every backend of ``runner.visualizer``
    (``LocalVisBackend``:
    ``<work_dir>/<timestamp>/vis_data/vis_image/{name}_{step}.png``). The step
    is the number of completed epochs for an epoch-based training loop, of
    completed iterations for an iteration-based one, and 0 when the process
    does not train (``tools/test.py``).

    Args:
        out_dir (str, optional): Folder for an extra copy
            ``{name}_{step}.png`` of every diagram. Defaults to None.
        phases (Sequence[str]): Where to draw, among 'val' and 'test'.
            Defaults to ('val', 'test').
    """

    priority = 'LOW'

    def __init__(
        self, out_dir: Optional[str] = None, phases: Sequence[str] = PHASES
    ) -> None:
        unknown = set(phases) - set(PHASES)
        if unknown:
            raise ValueError(
                f'ReliabilityDiagramHook: phases must be among '
                f'{PHASES}, got {sorted(unknown)}'
            )
        self.out_dir = out_dir
        self.phases = tuple(phases)
        self._train_loop = None
        self._warned = set()

    def before_train(self, runner) -> None:
        self._train_loop = runner.train_loop

    def _step(self) -> int:
        if self._train_loop is None:
            return 0
        if isinstance(self._train_loop, EpochBasedTrainLoop):
            return self._train_loop.epoch
        return self._train_loop.iter

    def _draw(self, runner, stage: str, loop) -> None:
        if stage not in self.phases:
            return
        metrics = [
            metric
            for metric in loop.evaluator.metrics
            if isinstance(metric, CalibrationMetricBase)
        ]
        if not metrics and stage not in self._warned:
            self._warned.add(stage)
            found = [type(m).__name__ for m in loop.evaluator.metrics]
            warnings.warn(
                f'ReliabilityDiagramHook: the {stage} evaluator has no '
                f'calibration metric (found {found}), so no reliability '
                f"diagram is drawn; add dict(type='ClsCalibrationMetric') "
                f'(or SegCalibrationMetric) to {stage}_evaluator, or remove '
                'the hook',
                stacklevel=2,
            )
        for metric in metrics:
            reliability = metric.pop_reliability()
            if reliability is None:  # not the main process
                continue
            publish_reliability_diagram(
                *reliability,
                name=f'{metric.prefix}_reliability_{stage}',
                step=self._step(),
                visualizer=runner.visualizer,
                out_dir=self.out_dir,
            )

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._draw(runner, 'val', runner.val_loop)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._draw(runner, 'test', runner.test_loop)
