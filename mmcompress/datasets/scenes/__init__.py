"""Real-image scenes for detection, segmentation and pose (see docs/scenes.md).

The generator (``composer``, ``writers``) needs only numpy, OpenCV, SciPy and the
scikit-image wheel's photos. The dataset classes register only when their
downstream package is installed: ``det_dataset`` needs mmdet, ``seg_dataset``
mmseg and ``pose_dataset`` mmpose.
"""

from mmcompress.utils import has_package

from .composer import (
    STYLES,
    Scene,
    SceneInstance,
    SceneOptions,
    SceneStyle,
    compose_scene,
    domain_style,
)
from .keypoints import (
    GARMENT_KEYPOINT_NAMES,
    GARMENT_KEYPOINT_SIGMAS,
    garment_keypoints,
    garment_pose_metainfo,
)
from .retarget import point_config_at_scenes
from .sources import BACKGROUND_PHOTOS, FASHION_MNIST_CLASSES
from .writers import (
    SPLIT_PRESETS,
    default_data_root,
    generate_scenes,
    iter_scenes,
    mask_to_bbox,
    mask_to_rle,
)

__all__ = [
    'STYLES',
    'Scene',
    'SceneInstance',
    'SceneOptions',
    'SceneStyle',
    'compose_scene',
    'domain_style',
    'GARMENT_KEYPOINT_NAMES',
    'GARMENT_KEYPOINT_SIGMAS',
    'garment_keypoints',
    'garment_pose_metainfo',
    'FASHION_MNIST_CLASSES',
    'BACKGROUND_PHOTOS',
    'SPLIT_PRESETS',
    'point_config_at_scenes',
    'default_data_root',
    'generate_scenes',
    'iter_scenes',
    'mask_to_bbox',
    'mask_to_rle',
]

if has_package('mmdet'):
    from .det_dataset import FashionSceneDetDataset  # noqa: F401

    __all__.append('FashionSceneDetDataset')
if has_package('mmseg'):
    from .seg_dataset import FashionSceneSegDataset  # noqa: F401

    __all__.append('FashionSceneSegDataset')
if has_package('mmpose'):
    from .pose_dataset import FashionScenePoseDataset  # noqa: F401

    __all__.append('FashionScenePoseDataset')
