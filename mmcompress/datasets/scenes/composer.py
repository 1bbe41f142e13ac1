"""Compose one scene: Fashion-MNIST garments pasted onto a cropped real photo.

A scene is fully determined by a ``numpy.random.Generator``; the writers derive one
generator per image from ``(seed, split, domain, image index)``, so image ``i`` is
the same whatever the number of images asked for.

Per garment: a class is drawn uniformly, then an item of that class from the
Fashion-MNIST split; the item is cut to its tight box, its alpha is taken from its
own grey values (holes inside the outline filled), it is resized so that its longer
side is ``min_item_size..max_item_size`` pixels, flipped horizontally with
probability 1/2, tinted with a random colour that keeps the item's own shading, and
pasted at a random position inside the image. Later garments occlude earlier ones;
a placement that would leave an earlier garment with less than
``min_visible_fraction`` of its pixels visible is redrawn (at most
``max_placement_attempts`` times, after which the garment is dropped).
"""

import colorsys
from dataclasses import dataclass, field, replace
from typing import Dict, List, Tuple

import cv2
import numpy as np
from scipy import ndimage

from .keypoints import OCCLUDED, VISIBLE, garment_keypoints
from .sources import load_background, load_fashion_mnist

# Alpha thresholds: a pixel belongs to a garment's binary mask at alpha >= 0.5;
# the semantic label map marks pixels with alpha in [0.25, 0.75) as ignore (255).
MASK_ALPHA = 0.5
IGNORE_ALPHA_LOW = 0.25
IGNORE_ALPHA_HIGH = 0.75
IGNORE_INDEX = 255

# Grey level (0-255) above which a Fashion-MNIST pixel is part of the item, and
# the grey level at which its alpha saturates to 1.
_ITEM_THRESHOLD = 20
_ALPHA_FULL = 60


@dataclass(frozen=True)
class SceneStyle:
    """The look of a domain: which photos, how they and the garments are coloured.

    Args:
        name (str): Domain name.
        backgrounds (tuple[str]): Keys of ``sources.BACKGROUND_PHOTOS``.
        grey_background (bool): Convert the photo to grey and apply a random
            colour cast (a channel gain drawn from ``casts``) instead of keeping
            its colours.
        casts (tuple[tuple[float]]): Candidate RGB gains for the colour cast.
        tint_saturation (tuple[float]): Range of the HSV saturation of tints.
        tint_value (tuple[float]): Range of the HSV value of tints.
        noise_std (float): Standard deviation of additive Gaussian pixel noise.
        photo_mix (float): Weight in [0, 1) of a colour photo from
            ``mix_backgrounds`` blended into the background (``(1 - photo_mix)
            * background + photo_mix * photo``); 0 blends nothing.
        mix_backgrounds (tuple[str]): Keys of the photos blended in.
    """

    name: str
    backgrounds: Tuple[str, ...]
    grey_background: bool = False
    casts: Tuple[Tuple[float, float, float], ...] = ((1.0, 1.0, 1.0),)
    tint_saturation: Tuple[float, float] = (0.5, 1.0)
    tint_value: Tuple[float, float] = (0.6, 1.0)
    noise_std: float = 0.0
    photo_mix: float = 0.0
    mix_backgrounds: Tuple[str, ...] = ()


STYLES: Dict[str, SceneStyle] = {
    'source': SceneStyle(
        name='source',
        backgrounds=(
            'astronaut',
            'chelsea',
            'coffee',
            'rocket',
            'hubble_deep_field',
            'immunohistochemistry',
        ),
    ),
    'target': SceneStyle(
        name='target',
        backgrounds=('brick', 'grass', 'gravel', 'camera', 'coins', 'cell'),
        grey_background=True,
        casts=((1.1, 0.9, 0.65), (0.65, 0.85, 1.1), (0.8, 1.05, 0.75)),
        tint_saturation=(0.0, 0.3),
        tint_value=(0.45, 0.95),
        noise_std=8.0,
    ),
}


def _lerp_range(
    low: Tuple[float, float], high: Tuple[float, float], weight: float
) -> Tuple[float, float]:
    return tuple(a + weight * (b - a) for a, b in zip(low, high))


def domain_style(domain: str, shift_strength: float = 1.0) -> SceneStyle:
    """The style of a domain, the target one at a given shift strength.

    At strength ``s`` the target style is moved towards the source style: its
    grey-texture background (with its colour cast) is blended as ``s * texture +
    (1 - s) * photo`` with a colour photo of the source domain, the garment tint
    ranges are ``source + s * (target - source)`` and the noise is ``s`` times the
    target noise. ``s = 1`` is the target style itself (same random draws, same
    images); at ``s < 1`` the blended photo is drawn from a generator spawned
    from the scene's, so the garments, positions and tint draws of an image are
    the same at every strength.

    Args:
        domain (str): ``'source'`` or ``'target'``.
        shift_strength (float): Strength of the target shift in (0, 1]; must be
            1 for the source domain. Defaults to 1.0.

    Returns:
        SceneStyle: The style to compose the domain's scenes with.
    """
    if domain not in STYLES:
        raise ValueError(
            f'domain {domain!r} is not valid; choose one of {sorted(STYLES)}.'
        )
    if not 0.0 < shift_strength <= 1.0:
        raise ValueError(f'shift_strength must be in (0, 1], got {shift_strength}.')
    if shift_strength == 1.0:
        return STYLES[domain]
    if domain != 'target':
        raise ValueError(
            'shift_strength applies to the target domain only; got '
            f'shift_strength={shift_strength} with domain {domain!r}.'
        )
    source, target = STYLES['source'], STYLES['target']
    return replace(
        target,
        name=f'target_s{shift_strength:g}',
        tint_saturation=_lerp_range(
            source.tint_saturation, target.tint_saturation, shift_strength
        ),
        tint_value=_lerp_range(source.tint_value, target.tint_value, shift_strength),
        noise_std=shift_strength * target.noise_std,
        photo_mix=1.0 - shift_strength,
        mix_backgrounds=source.backgrounds,
    )


@dataclass(frozen=True)
class SceneOptions:
    """Geometry of the scenes.

    Args:
        image_size (int): Side of the square images in pixels.
        min_objects (int): Fewest garments drawn per image.
        max_objects (int): Most garments drawn per image.
        min_item_size (int): Smallest longer side of a garment in pixels.
        max_item_size (int): Largest longer side of a garment in pixels.
        min_visible_fraction (float): Fraction of a garment's mask that must stay
            visible when later garments are placed over it.
        max_placement_attempts (int): Draws per garment before it is dropped.
    """

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    min_item_size: int = 28
    max_item_size: int = 64
    min_visible_fraction: float = 0.5
    max_placement_attempts: int = 20

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(
                f'image_size must be at least 32 pixels, got {self.image_size}.'
            )
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                'Need 1 <= min_objects <= max_objects, got min_objects='
                f'{self.min_objects}, max_objects={self.max_objects}.'
            )
        if not 8 <= self.min_item_size <= self.max_item_size <= self.image_size:
            raise ValueError(
                'Need 8 <= min_item_size <= max_item_size <= image_size, got '
                f'min_item_size={self.min_item_size}, max_item_size='
                f'{self.max_item_size}, image_size={self.image_size}.'
            )
        if not 0.0 < self.min_visible_fraction <= 1.0:
            raise ValueError(
                'min_visible_fraction must be in (0, 1], got '
                f'{self.min_visible_fraction}.'
            )
        if self.max_placement_attempts < 1:
            raise ValueError(
                'max_placement_attempts must be >= 1, got '
                f'{self.max_placement_attempts}.'
            )


@dataclass
class SceneInstance:
    """One garment of a scene.

    Args:
        label (int): Fashion-MNIST class index (0-9).
        alpha (np.ndarray): ``float32`` (H, W) opacity of the garment alone.
        visible_mask (np.ndarray): Boolean (H, W): its mask minus the masks of
            the garments pasted after it.
        keypoints (np.ndarray): ``float64`` (5, 3): x, y and COCO visibility
            (2 visible, 1 covered by a later garment).
    """

    label: int
    alpha: np.ndarray
    visible_mask: np.ndarray
    keypoints: np.ndarray = field(default=None)

    @property
    def mask(self) -> np.ndarray:
        """Boolean (H, W) mask of the whole garment, occluded parts included."""
        return self.alpha >= MASK_ALPHA


@dataclass
class Scene:
    """A composed image and its garments, in pasting order.

    Args:
        image (np.ndarray): RGB ``uint8`` (H, W, 3).
        instances (list[SceneInstance]): Garments, first pasted first.
        background (str): Name of the photo the background was cut from.
    """

    image: np.ndarray
    instances: List[SceneInstance]
    background: str

    def semantic_map(self) -> np.ndarray:
        """Per-pixel labels: 0 background, class + 1 garment, 255 ignore.

        Returns:
            np.ndarray: ``uint8`` (H, W). A pixel takes the class of the last
            garment whose alpha there is >= 0.75 and becomes 255 where a later
            garment's alpha is in [0.25, 0.75) (its anti-aliased rim).
        """
        labels = np.zeros(self.image.shape[:2], dtype=np.uint8)
        for instance in self.instances:
            labels[instance.alpha >= IGNORE_ALPHA_HIGH] = instance.label + 1
            rim = (instance.alpha >= IGNORE_ALPHA_LOW) & (
                instance.alpha < IGNORE_ALPHA_HIGH
            )
            labels[rim] = IGNORE_INDEX
        return labels


def _class_index(split: str) -> List[np.ndarray]:
    """Indices of the items of each class in a Fashion-MNIST split."""
    _, labels = load_fashion_mnist(split)
    return [np.flatnonzero(labels == label) for label in range(10)]


def _item_sprite(item: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Cut a 28x28 item to its tight box and derive its alpha.

    Args:
        item (np.ndarray): ``uint8`` (28, 28) Fashion-MNIST image.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``float32`` grey values in [0, 1] and
        alpha in [0, 1], both cut to the item's tight box.
    """
    foreground = ndimage.binary_fill_holes(item > _ITEM_THRESHOLD)
    rows = np.flatnonzero(foreground.any(axis=1))
    cols = np.flatnonzero(foreground.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    grey = item[box].astype(np.float32) / 255.0
    alpha = np.clip(item[box].astype(np.float32) / _ALPHA_FULL, 0.0, 1.0)
    alpha[foreground[box]] = 1.0
    return grey, alpha


def _photo_crop(
    rng: np.random.Generator, names: Tuple[str, ...], size: int
) -> Tuple[np.ndarray, str]:
    """Cut a random square from a random photo, resize it and flip it at 1/2."""
    name = names[rng.integers(len(names))]
    photo = load_background(name)
    height, width = photo.shape[:2]
    side = int(round(rng.uniform(0.35, 1.0) * min(height, width)))
    top = int(rng.integers(height - side + 1))
    left = int(rng.integers(width - side + 1))
    crop = photo[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    image = cv2.resize(crop, (size, size), interpolation=interpolation)
    image = image.astype(np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return image, name


def _background(
    rng: np.random.Generator, style: SceneStyle, size: int
) -> Tuple[np.ndarray, str]:
    """The style's background: a photo crop, cast to grey and blended as styled."""
    image, name = _photo_crop(rng, style.backgrounds, size)
    if style.grey_background:
        grey = image.mean(axis=2, keepdims=True)
        cast = np.asarray(style.casts[rng.integers(len(style.casts))], dtype=np.float32)
        image = grey * cast * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    if style.photo_mix > 0:
        # a spawned generator: the scene's own draws stay those of photo_mix=0
        photo, _ = _photo_crop(rng.spawn(1)[0], style.mix_backgrounds, size)
        image = (1.0 - style.photo_mix) * image + style.photo_mix * photo
    return np.ascontiguousarray(image), name


def _tint(rng: np.random.Generator, style: SceneStyle) -> np.ndarray:
    """Draw an RGB tint in [0, 255] from the style's HSV ranges."""
    hue = rng.random()
    saturation = rng.uniform(*style.tint_saturation)
    value = rng.uniform(*style.tint_value)
    return (
        np.asarray(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32)
        * 255.0
    )


def compose_scene(
    rng: np.random.Generator, options: SceneOptions, style: SceneStyle, item_split: str
) -> Scene:
    """Compose one scene.

    Args:
        rng (np.random.Generator): Source of all randomness of this scene.
        options (SceneOptions): Image and garment geometry.
        style (SceneStyle): Domain look (photos, colours, noise).
        item_split (str): Fashion-MNIST split the garments come from
            (``'train'`` or ``'test'``).

    Returns:
        Scene: The image and its garments with masks and keypoints.
    """
    items, _ = load_fashion_mnist(item_split)
    per_class = _class_index(item_split)
    size = options.image_size
    canvas, background_name = _background(rng, style, size)
    num_objects = int(rng.integers(options.min_objects, options.max_objects + 1))
    instances: List[SceneInstance] = []
    colour_layers = []
    for _ in range(num_objects):
        for _ in range(options.max_placement_attempts):
            label = int(rng.integers(10))
            item_index = per_class[label][rng.integers(len(per_class[label]))]
            grey, alpha = _item_sprite(items[item_index])
            longer = int(rng.integers(options.min_item_size, options.max_item_size + 1))
            scale = longer / max(grey.shape)
            height = max(4, int(round(grey.shape[0] * scale)))
            width = max(4, int(round(grey.shape[1] * scale)))
            grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_LINEAR)
            alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                grey, alpha = grey[:, ::-1], alpha[:, ::-1]
            tint = _tint(rng, style)
            top = int(rng.integers(size - height + 1))
            left = int(rng.integers(size - width + 1))
            full_alpha = np.zeros((size, size), dtype=np.float32)
            full_alpha[top : top + height, left : left + width] = alpha
            mask = full_alpha >= MASK_ALPHA
            if not mask.any():
                continue
            if all(
                (earlier.visible_mask & ~mask).sum()
                >= options.min_visible_fraction * earlier.mask.sum()
                for earlier in instances
            ):
                break
        else:
            continue
        for earlier in instances:
            earlier.visible_mask &= ~mask
        shading = (0.3 + 0.7 * grey)[..., None] * tint
        colour = np.zeros((size, size, 3), dtype=np.float32)
        colour[top : top + height, left : left + width] = shading
        instances.append(
            SceneInstance(label=label, alpha=full_alpha, visible_mask=mask.copy())
        )
        colour_layers.append(colour)
    for instance, colour in zip(instances, colour_layers):
        alpha = instance.alpha[..., None]
        canvas = canvas * (1.0 - alpha) + colour * alpha
    if style.noise_std > 0:
        canvas = canvas + rng.normal(0.0, style.noise_std, canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    for position, instance in enumerate(instances):
        points = garment_keypoints(instance.mask)
        covered = np.zeros((size, size), dtype=bool)
        for later in instances[position + 1 :]:
            covered |= later.mask
        cols = np.clip(np.rint(points[:, 0]).astype(int), 0, size - 1)
        rows = np.clip(np.rint(points[:, 1]).astype(int), 0, size - 1)
        visibility = np.where(covered[rows, cols], OCCLUDED, VISIBLE)
        instance.keypoints = np.concatenate([points, visibility[:, None]], axis=1)
    return Scene(image=image, instances=instances, background=background_name)
