"""COCO-keypoint dataset of the fashion scenes (needs mmpose)."""

from typing import List, Optional, Tuple

from mmpose.datasets.datasets.base import BaseCocoStyleDataset

from mmcompress.registry import DATASETS

from .keypoints import garment_pose_metainfo
from .writers import require_generated


@DATASETS.register_module()
class FashionScenePoseDataset(BaseCocoStyleDataset):
    """Top-down garment keypoints (five per garment) in COCO-keypoint files.

    The metainfo (keypoint names, skeleton, flip pairs, OKS sigmas) comes from
    :func:`mmcompress.datasets.scenes.keypoints.garment_pose_metainfo`; all other
    behaviour is mmpose's ``BaseCocoStyleDataset``, so mmpose's ``CocoMetric``
    evaluates it with ``ann_file`` pointing at the same json.
    """

    METAINFO: dict = garment_pose_metainfo()

    def _load_annotations(self) -> Tuple[List[dict], List[dict]]:
        """Check that the scenes exist, then load the COCO-keypoint file."""
        require_generated(self.ann_file, 'pose', self.data_root)
        return super()._load_annotations()

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[dict] = None) -> dict:
        """Use the garment metainfo unless a complete one is given."""
        return super()._load_metainfo(metainfo or garment_pose_metainfo())
