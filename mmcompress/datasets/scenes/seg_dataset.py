"""Semantic segmentation dataset of the fashion scenes (needs mmseg)."""

from typing import List

from mmseg.datasets import BaseSegDataset

from mmcompress.registry import DATASETS

from .sources import FASHION_MNIST_CLASSES
from .writers import require_generated


@DATASETS.register_module()
class FashionSceneSegDataset(BaseSegDataset):
    """Images with ``uint8`` label maps: 0 background, 1-10 garments, 255 ignore.

    Args:
        img_suffix (str): Image file suffix. Defaults to ``'.png'``.
        seg_map_suffix (str): Label map suffix. Defaults to ``'.png'``.
        **kwargs: Passed to ``mmseg.datasets.BaseSegDataset`` (``data_root``,
            ``data_prefix=dict(img_path=..., seg_map_path=...)``, ``pipeline``...).
    """

    METAINFO = dict(
        classes=('background',) + FASHION_MNIST_CLASSES,
        palette=[
            [0, 0, 0],
            [220, 20, 60],
            [119, 11, 32],
            [0, 0, 142],
            [0, 0, 230],
            [106, 0, 228],
            [0, 60, 100],
            [0, 80, 100],
            [0, 0, 70],
            [0, 0, 192],
            [250, 170, 30],
        ],
    )

    def __init__(
        self, img_suffix: str = '.png', seg_map_suffix: str = '.png', **kwargs
    ) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=False,
            **kwargs,
        )

    def load_data_list(self) -> List[dict]:
        """Check that the scenes exist, then pair images with label maps."""
        for key in ('img_path', 'seg_map_path'):
            require_generated(self.data_prefix.get(key, ''), 'seg', self.data_root)
        return super().load_data_list()
