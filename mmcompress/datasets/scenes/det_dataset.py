"""COCO detection/instance dataset of the fashion scenes (needs mmdet)."""

from typing import List

from mmdet.datasets import CocoDataset

from mmcompress.registry import DATASETS

from .sources import FASHION_MNIST_CLASSES
from .writers import require_generated


@DATASETS.register_module()
class FashionSceneDetDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with the ten garment classes.

    The annotation files are plain COCO, so the stock ``CocoDataset`` with
    ``metainfo=dict(classes=FASHION_MNIST_CLASSES)`` reads them as well; this
    subclass only fixes the class names and says how to generate the files when
    they are missing.
    """

    METAINFO = dict(
        classes=FASHION_MNIST_CLASSES,
        palette=[
            (220, 20, 60),
            (119, 11, 32),
            (0, 0, 142),
            (0, 0, 230),
            (106, 0, 228),
            (0, 60, 100),
            (0, 80, 100),
            (0, 0, 70),
            (0, 0, 192),
            (250, 170, 30),
        ],
    )

    def load_data_list(self) -> List[dict]:
        """Check that the scenes exist, then load them as COCO."""
        require_generated(self.ann_file, 'det', self.data_root)
        return super().load_data_list()
