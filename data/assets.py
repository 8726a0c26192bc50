"""Built-in image assets that ship inside installed packages (no downloads) and their splits.

Everything is read from files that scikit-image, scikit-learn and matplotlib install
next to their code; nothing here ever calls a fetcher that downloads. The test split
holds backgrounds (and, for faces, objects) that the train split never sees, so a test
figure measures generalization, not memory; the val split has its own held-out
backgrounds and LFW faces (only two colour portraits exist: val reuses the training one).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data.images import ImageError, read_image

# name -> (package, path inside the package). Backgrounds are scenes without cats or faces.
_FILES: dict[str, tuple[str, str]] = {
    "chelsea": ("skimage", "data/chelsea.png"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "camera": ("skimage", "data/camera.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "ihc": ("skimage", "data/ihc.png"),
    "coins": ("skimage", "data/coins.png"),
    "text": ("skimage", "data/text.png"),
    "page": ("skimage", "data/page.png"),
    "moon": ("skimage", "data/moon.png"),
    "clock_motion": ("skimage", "data/clock_motion.png"),
    "cell": ("skimage", "data/cell.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "lfw_subset": ("skimage", "data/lfw_subset.npy"),
}

# Three disjoint sets, so neither early stopping (val) nor the final figure (test) ever sees
# a training background. Test: a colour landscape, a colour night scene, a grey texture.
# motorcycle_right is left out everywhere: it is nearly the same photo as motorcycle_left.
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "train": (
        "coffee", "hubble_deep_field", "motorcycle_left", "ihc", "brick", "camera", "coins",
        "text", "page", "moon", "clock_motion", "cell", "retina",
    ),
    "val": ("flower", "gravel"),
    "test": ("china", "rocket", "grass"),
}
# Scenes that show a person: not used behind faces (they would be unlabelled faces).
HAS_PERSON = frozenset({"camera"})

# Face boxes (x1, y1, x2, y2 pixels) found with OpenCV's frontal-face Haar cascade.
FACE_BOXES: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (177, 66, 272, 161),
    "grace_hopper": (155, 105, 377, 327),
}
LFW_FACES = 100  # lfw_subset.npy: the first 100 crops are faces, the rest are not
FACES: dict[str, tuple[str, ...]] = {  # the first entry of each split is its portrait
    "train": ("astronaut",) + tuple(f"lfw:{i}" for i in range(70)),
    "val": ("astronaut",) + tuple(f"lfw:{i}" for i in range(70, 80)),
    "test": ("grace_hopper",) + tuple(f"lfw:{i}" for i in range(80, LFW_FACES)),
}


def split_key(split: str) -> str:
    """Check a split name: ``train``, ``val`` or ``test``."""
    if split not in BACKGROUNDS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(BACKGROUNDS)}")
    return split


def asset_path(name: str) -> Path:
    """Path of a built-in asset file; a clear error when its package is missing."""
    if name not in _FILES:
        raise ValueError(f"unknown asset {name!r}; valid: {', '.join(sorted(_FILES))}")
    package, rel = _FILES[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"asset {name!r} ships with the {package!r} package, which is not installed; "
            f"install the training extras: pip install -e '.[train]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise RuntimeError(f"asset file {path} is missing; reinstall {package}")
    return path


@functools.lru_cache(maxsize=None)
def load_image(name: str) -> np.ndarray:
    """A built-in photo as (h, w, 3) uint8 RGB (grey ones are stacked to three channels)."""
    path = asset_path(name)
    try:
        image = read_image(path)
    except ImageError as err:
        raise RuntimeError(f"could not decode asset: {err}; reinstall its package") from None
    image.setflags(write=False)  # cached and shared: nobody may draw on it
    return image


@functools.lru_cache(maxsize=None)
def lfw_faces() -> np.ndarray:
    """The 100 LFW face crops as (100, 25, 25) uint8 grey."""
    faces = np.load(asset_path("lfw_subset"))[:LFW_FACES]  # float64 in [0, 1]
    faces = np.round(faces * 255).astype(np.uint8)
    faces.setflags(write=False)
    return faces


@dataclass(frozen=True)
class FaceCrop:
    """A portrait crop and the face box inside it (x1, y1, x2, y2 pixels of the crop)."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    soft_edges: bool  # feather the crop's border (portraits) or paste it as is (tight crops)


@functools.lru_cache(maxsize=None)
def face_crop(name: str) -> FaceCrop:
    """A face object: portraits cropped around the face with margin; LFW crops as colour."""
    if name.startswith("lfw:"):
        gray = lfw_faces()[int(name.split(":")[1])]
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        rgb.setflags(write=False)
        return FaceCrop(rgb, (0, 0, 25, 25), soft_edges=False)
    image = load_image(name)
    x1, y1, x2, y2 = FACE_BOXES[name]
    side = x2 - x1
    # Head and shoulders: a margin of ~0.6 face widths on each side, clipped to the photo.
    cx1, cy1 = max(0, int(x1 - 0.6 * side)), max(0, int(y1 - 0.6 * side))
    cx2 = min(image.shape[1], int(x2 + 0.6 * side))
    cy2 = min(image.shape[0], int(y2 + 0.8 * side))
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    crop.setflags(write=False)
    return FaceCrop(crop, (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1), soft_edges=True)


@functools.lru_cache(maxsize=None)
def scene(name: str, max_side: int = 640) -> np.ndarray:
    """A background photo shrunk to at most ``max_side`` pixels (faster random crops)."""
    image = load_image(name)
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        image.setflags(write=False)
    return image


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize: INTER_AREA when shrinking more than 2x (no aliasing), else the faster linear."""
    if image.shape[1] > 2 * width or image.shape[0] > 2 * height:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def backgrounds(split: str, *, faces: bool = False) -> tuple[str, ...]:
    """Background asset names of a split (``faces`` drops scenes that show people)."""
    names = BACKGROUNDS[split_key(split)]
    return tuple(n for n in names if not (faces and n in HAS_PERSON))


def random_background(
    rng: np.random.Generator, names: tuple[str, ...], height: int, width: int
) -> tuple[np.ndarray, str]:
    """A (height, width, 3) uint8 background: a random crop of a random scene, flipped,
    scaled and colour-jittered so a small set of photos gives variety; returns (image, name).
    """
    name = names[int(rng.integers(len(names)))]
    photo = scene(name)
    sh, sw = photo.shape[:2]
    # Crop with the canvas aspect ratio, 35%..100% of the largest such window.
    aspect = width / height
    max_h = min(sh, sw / aspect)
    ch = max_h * rng.uniform(0.35, 1.0)
    cw = ch * aspect
    y0 = rng.uniform(0, sh - ch)
    x0 = rng.uniform(0, sw - cw)
    crop = photo[int(y0) : int(y0 + ch), int(x0) : int(x0 + cw)]
    out = resize(crop, width, height)
    flip = int(rng.integers(4))  # none, horizontal, vertical, both: upside-down clutter is still clutter
    if flip:
        out = cv2.flip(out, {1: 1, 2: 0, 3: -1}[flip])
    out = jitter_colors(rng, out, strength=0.6)
    return out, name


_LEVELS = np.arange(256, dtype=np.float32)


def jitter_colors(
    rng: np.random.Generator, image: np.ndarray, *, strength: float = 1.0, hsv: float = 0.6
) -> np.ndarray:
    """Random brightness and contrast, and with probability ``hsv`` saturation and hue.

    ``strength`` scales the ranges (1.0: contrast +-30%, brightness +-40, saturation
    +-35%, hue +-12 of OpenCV's 180). One lookup table does it all: on RGB, or on HSV.
    """
    alpha = 1.0 + strength * rng.uniform(-0.3, 0.3)  # contrast
    beta = strength * rng.uniform(-40, 40)  # brightness
    mean = float(np.mean(cv2.mean(image)[:3]))  # pivot of the contrast change
    levels = np.clip((_LEVELS - mean) * alpha + mean + beta, 0, 255)
    if image.ndim != 3 or rng.random() >= hsv:
        return cv2.LUT(image, levels.astype(np.uint8))
    hue = round(strength * rng.uniform(-12, 12))
    sat = 1.0 + strength * rng.uniform(-0.35, 0.35)
    table = np.stack([(_LEVELS + hue) % 180, np.clip(_LEVELS * sat, 0, 255), levels], axis=-1)
    out = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), table.astype(np.uint8)[:, None, :])
    return cv2.cvtColor(out, cv2.COLOR_HSV2RGB)
