"""Training augmentation in numpy and OpenCV: geometry that moves the box with the object,
and photometric / camera randomization that never touches it.

Order per sample (``augment_example``): small rotation and a random window on the image
at its own resolution (the box follows: a rotated box becomes its enclosing rectangle, a
window re-expresses it), then ``runtime.contract.preprocess`` (the one resize every model
input goes through), then on the small image a horizontal flip and the photometric chain.

Each operation has a probability in ``Augment``; the named profiles in ``AUGMENTS`` are
what ``--augment`` selects. What each camera operation imitates:
    rotate       a tilted camera (up to ``rotate_deg``; the box grows to the rotated box's
                 enclosing rectangle, so angles stay small)
    gamma        another sensor response / exposure curve
    white_balance  another colour temperature (independent gains per channel)
    dim          a dim scene or an under-exposed sensor (one gain of 0.3-0.8 on all
                 channels, before the noise; for cameras darker than the training photos)
    grayscale    monochrome and IR cameras
    blur         out-of-focus or motion blur (Gaussian or a line kernel)
    noise        sensor noise at low light
    jpeg         a compressed stream or a re-saved photo (quality 25-90)
Which of them help generalization across cameras was measured: BENCHMARKS.md section 7.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from data.assets import jitter_colors
from data.images import jpeg_roundtrip
from data.sources import Sample
from runtime.contract import from_xyxy, preprocess


@dataclass(frozen=True)
class Augment:
    """Augmentation settings; probabilities are per image.

    Attributes:
        crop: probability of a random window (zoom in/out, aspect change, translate).
        scale: window side range as a share of the image side (above 1 zooms out).
        aspect: max log-ratio between the window's x and y scales.
        outside: how far (share of the image side) a window may reach past the image;
            the part outside is filled with ``fill`` (a grey level; None: a random grey,
            or half the time the image mirrored at its border).
        fill: grey level of the padding (None: random, see ``outside``).
        flip: probability of a horizontal flip.
        rotate: probability of a small rotation of up to ``rotate_deg`` degrees.
        rotate_deg: largest rotation angle.
        color: probability of brightness/contrast/saturation/hue jitter.
        color_strength: scales the jitter ranges (1.0: +-30% contrast, +-40 brightness).
        gamma: probability of a gamma curve in [0.6, 1.6].
        white_balance: probability of per-channel gains of up to +-``wb_strength``.
        wb_strength: largest white-balance gain change.
        dim: probability of an exposure gain of 0.3-0.8 (log-uniform) on all channels.
        grayscale: probability of turning the image grey (three equal channels).
        blur: probability of a Gaussian (70%) or motion (30%) blur.
        noise: probability of additive Gaussian noise (sigma 2..10 grey levels).
        jpeg: probability of a JPEG round trip at quality 25-90.
    """

    crop: float = 0.7
    scale: tuple[float, float] = (0.6, 1.2)
    aspect: float = 0.15
    outside: float = 0.15
    fill: int | None = None
    flip: float = 0.5
    rotate: float = 0.0
    rotate_deg: float = 10.0
    color: float = 0.8
    color_strength: float = 0.8
    gamma: float = 0.0
    white_balance: float = 0.0
    wb_strength: float = 0.2
    dim: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.15
    noise: float = 0.2
    jpeg: float = 0.0

    @classmethod
    def geometry_only(cls, **changes: Any) -> Augment:
        """Only the box-moving augmentations."""
        off = {"color": 0.0, "gamma": 0.0, "white_balance": 0.0, "dim": 0.0, "grayscale": 0.0,
               "blur": 0.0, "noise": 0.0, "jpeg": 0.0}
        return cls(**{**off, **changes})

    @classmethod
    def photometric_only(cls, **changes: Any) -> Augment:
        """Only augmentations that leave the box where it is."""
        return cls(**{"crop": 0.0, "flip": 0.0, "rotate": 0.0, **changes})

    def __post_init__(self) -> None:
        """Refuse values that would silently do something else (a one-number range, p > 1)."""
        for name in _SHARES:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augmentation {name} must be a probability in [0, 1], got {value}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 4.0:
            raise ValueError("augmentation scale must be LOW:HIGH with 0 < LOW <= HIGH <= 4, "
                             f"got {self.scale}")
        # ``not 0 <= x <= hi``, not ``x < 0``: nan and inf are refused as well
        if not (0 <= self.aspect <= 1 and 0 <= self.color_strength <= 3 and 0 <= self.wb_strength < 1):
            raise ValueError("augmentation aspect must be in [0, 1], color_strength in [0, 3] and "
                             f"wb_strength in [0, 1), got {self.aspect}, {self.color_strength}, "
                             f"{self.wb_strength}")
        if not 0.0 <= self.rotate_deg <= 45.0:
            raise ValueError(f"augmentation rotate_deg must be in [0, 45], got {self.rotate_deg}")
        if self.fill is not None and not 0 <= self.fill <= 255:
            raise ValueError(f"augmentation fill must be a grey level 0-255 or none, got {self.fill}")

    def with_overrides(self, overrides: dict[str, Any] | str | None) -> Augment:
        """A copy with fields changed from a dict or ``"key=value,key=value"`` text (--aug)."""
        if not overrides:
            return self
        if isinstance(overrides, str):
            overrides = parse_key_values(overrides, "--aug", words=("fill",))
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            key = key.strip().replace("-", "_")
            if key not in known:
                raise ValueError(f"unknown augmentation {key!r}; valid: {', '.join(known)}")
            current = getattr(self, key)
            try:
                if isinstance(current, tuple):
                    parts = value if isinstance(value, (list, tuple)) else [value]
                    changes[key] = tuple(float(v) for v in parts)
                elif key == "fill":
                    changes[key] = None if str(value).lower() == "none" else int(float(value))
                else:
                    changes[key] = float(value)
            except (TypeError, ValueError, OverflowError):  # int(inf): OverflowError
                raise ValueError(f"augmentation {key}: {value!r} is not a number") from None
        return replace(self, **changes)


_SHARES = ("crop", "outside", "flip", "rotate", "color", "gamma", "white_balance", "dim",
           "grayscale", "blur", "noise", "jpeg")  # probabilities (and outside, a share of the side)


def parse_key_values(text: str, flag: str, words: tuple[str, ...] = ()) -> dict[str, Any]:
    """``"scale=0.1:1.0,p=0.7"`` -> ``{"scale": [0.1, 1.0], "p": 0.7}``: the one parser of
    KEY=VALUE option lists (``--aug``, ``--paste-opt``). A value is a number or LOW:HIGH;
    keys in ``words`` may also be a word (``fill=none``). Errors name ``flag`` and the item.
    """
    out: dict[str, Any] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} {item!r} is not KEY=VALUE")
        if key in words and not value.replace(".", "", 1).isdigit():
            out[key] = value.strip()
            continue
        try:
            parts = [float(v) for v in value.split(":")]
        except ValueError:
            raise ValueError(f"{flag} {item!r}: the value must be a number (or LOW:HIGH)") from None
        out[key] = parts if len(parts) > 1 else parts[0]
    return out


# Named profiles for --augment. "camera" adds the camera randomization measured to help
# across sources (BENCHMARKS.md section 7) and a wider scale range for small and large objects.
AUGMENTS: dict[str, Augment | None] = {
    "none": None,
    "basic": Augment(),
    "camera": Augment(scale=(0.5, 2.0), outside=0.5, rotate=0.3, gamma=0.3, white_balance=0.3,
                      grayscale=0.1, blur=0.2, noise=0.2, jpeg=0.3),
}


def get_augment(name: str | bool | None, overrides: dict[str, Any] | str | None = None) -> Augment | None:
    """The ``AUGMENTS`` profile ``name`` (True = basic, False/None = none) with overrides."""
    if name is True:
        name = "basic"
    if name is False or name is None:
        name = "none"
    if name not in AUGMENTS:
        raise ValueError(f"unknown augmentation profile {name!r}; valid: {', '.join(AUGMENTS)}")
    aug = AUGMENTS[name]
    if aug is None:
        if overrides:
            raise ValueError("augmentation overrides need a profile other than 'none'")
        return None
    return aug.with_overrides(overrides)


# ------------------------------------------------------------------------------- geometry
def _axis_window(
    rng: np.random.Generator, length: int, lo: float, hi: float, size: float, outside: float
) -> tuple[int, int]:
    """(start, stop) in pixels of a window of ``size`` along one axis containing [lo, hi]."""
    out = outside * length
    size = float(np.clip(size, hi - lo, length + 2 * out))
    start_min = max(-out, hi - size)
    start_max = min(length + out - size, lo)
    start = int(np.floor(rng.uniform(start_min, max(start_min, start_max))))
    stop = start + max(1, int(np.ceil(size)))
    # Rounding must never cut the box: widen by a pixel where needed.
    return min(start, int(np.floor(lo))), max(stop, int(np.ceil(hi)))


def random_window(
    rng: np.random.Generator, image: np.ndarray, box: np.ndarray, present: bool, aug: Augment
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (and pad) a random window that keeps the whole box; return it and the new box."""
    height, width = image.shape[:2]
    sx = rng.uniform(*aug.scale)
    sy = sx * float(np.exp(rng.uniform(-aug.aspect, aug.aspect)))
    if present:
        bx1, by1, bx2, by2 = box * (width, height, width, height)
    else:  # nothing to keep: any window
        bx1, by1, bx2, by2 = width, height, 0.0, 0.0
    x0, x1 = _axis_window(rng, width, bx1, bx2, sx * width, aug.outside)
    y0, y1 = _axis_window(rng, height, by1, by2, sy * height, aug.outside)
    crop = image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if any(pads):
        crop = _pad(rng, crop, pads, aug.fill)
    if not present:
        return crop, box
    new = (np.array([bx1, by1, bx2, by2]) - (x0, y0, x0, y0)) / (x1 - x0, y1 - y0, x1 - x0, y1 - y0)
    return crop, np.clip(new, 0.0, 1.0).astype(np.float32)


def _pad(rng: np.random.Generator, crop: np.ndarray, pads: tuple[int, ...], fill: int | None) -> np.ndarray:
    """Pad with a grey level, or (random fill, half the time) the image mirrored at its edge,
    so a zoomed-out object is not always framed by a flat border the model could learn."""
    top, bottom, left, right = pads
    h, w = crop.shape[:2]
    mirror_ok = top < h and bottom < h and left < w and right < w  # reflection needs room
    if fill is None and mirror_ok and rng.random() < 0.5:
        return cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REFLECT_101)
    grey = int(rng.integers(0, 256)) if fill is None else int(fill)
    return cv2.copyMakeBorder(crop, *pads, cv2.BORDER_CONSTANT, value=(grey, grey, grey))


def rotate(
    rng: np.random.Generator, image: np.ndarray, box: np.ndarray, present: bool, max_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by a random angle in [-max_deg, max_deg] about the centre (same canvas size,
    corners mirrored in); the box becomes the rotated box's enclosing rectangle."""
    height, width = image.shape[:2]
    angle = float(rng.uniform(-max_deg, max_deg))
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)  # (2, 3)
    out = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    if not present:
        return out, box
    x1, y1, x2, y2 = box * (width, height, width, height)
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]])  # (4, 3)
    moved = corners @ matrix.T  # (4, 2)
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    new = np.array([lo[0] / width, lo[1] / height, hi[0] / width, hi[1] / height])
    return out, np.clip(new, 0.0, 1.0).astype(np.float32)


def flip_horizontal(image: np.ndarray, box: np.ndarray, present: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image left-right and the box with it."""
    if present:
        box = np.array([1.0 - box[2], box[1], 1.0 - box[0], box[3]], np.float32)
    return cv2.flip(image, 1), box


# ----------------------------------------------------------------------------- photometric
@functools.lru_cache(maxsize=2)
def noise_table(side: int) -> np.ndarray:
    """Fixed Gaussian noise; random windows of it are much cheaper than fresh draws (the
    tf pipeline takes its windows from the same table)."""
    return np.random.default_rng(1234).standard_normal((side, side, 3)).astype(np.float32)


_LEVELS = np.arange(256, dtype=np.float32) / 255.0


def _gamma(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    return cv2.LUT(image, np.clip(255.0 * _LEVELS**gamma + 0.5, 0, 255).astype(np.uint8))


DIM_GAINS = (0.3, 0.8)  # the exposure gain range of ``Augment.dim`` (log-uniform)


def exposure_gain(rng: np.random.Generator) -> float:
    """One ``Augment.dim`` exposure gain."""
    return float(np.exp(rng.uniform(np.log(DIM_GAINS[0]), np.log(DIM_GAINS[1]))))


def _gains(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Per-channel gains (white balance times exposure) through one table per channel."""
    tables = np.clip(255.0 * _LEVELS[:, None] * gains[None, :] + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, tables[:, None, :])  # (256, 1, 3): a table per channel


def _grayscale(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    if rng.random() < 0.7:
        k = 3 if rng.random() < 0.7 else 5
        return cv2.GaussianBlur(image, (k, k), 0)
    k = int(rng.choice([3, 5, 7]))  # motion: a line kernel at a random angle
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    turn = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, turn, (k, k))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


def _noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    table = noise_table(max(512, h, w))
    oy, ox = rng.integers(0, table.shape[0] - h + 1), rng.integers(0, table.shape[1] - w + 1)
    noisy = image + rng.uniform(2, 10) * table[oy : oy + h, ox : ox + w]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    return jpeg_roundtrip(image, int(rng.integers(25, 91)))


def photometric(rng: np.random.Generator, image: np.ndarray, aug: Augment) -> np.ndarray:
    """Colour, camera response, blur, noise and compression; the geometry is untouched."""
    if rng.random() < aug.color:
        image = jitter_colors(rng, image, strength=aug.color_strength)
    if rng.random() < aug.gamma:
        image = _gamma(rng, image)
    gains = np.ones(3)
    if rng.random() < aug.white_balance:
        gains = 1.0 + rng.uniform(-aug.wb_strength, aug.wb_strength, size=3)  # one per channel
    if aug.dim and rng.random() < aug.dim:  # no draw when off: other runs' streams stay
        gains = gains * exposure_gain(rng)
    if np.any(gains != 1):
        image = _gains(image, gains)
    if rng.random() < aug.grayscale:
        image = _grayscale(image)
    if rng.random() < aug.blur:
        image = _blur(rng, image)
    if rng.random() < aug.noise:
        image = _noise(rng, image)
    if rng.random() < aug.jpeg:
        image = _jpeg(rng, image)
    return image


# ---------------------------------------------------------------------------------- sample
def augment_example(
    sample: Sample,
    image_size: int,
    *,
    box_format: str = "xyxy",
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.int32]:
    """One training element: ((S, S, 3) uint8 image, (5,) float32 box + presence, int32 label)."""
    present = int(sample.label) > 0
    box = np.asarray(sample.box, np.float32) if present else np.zeros(4, np.float32)
    image = sample.image
    if augment is not None:
        rng = rng if rng is not None else np.random.default_rng()
        if rng.random() < augment.rotate:
            image, box = rotate(rng, image, box, present, augment.rotate_deg)
        if rng.random() < augment.crop:
            image, box = random_window(rng, image, box, present, augment)
    image = preprocess(image, image_size)  # (S, S, 3) uint8, the contract
    if augment is not None:
        if rng.random() < augment.flip:
            image, box = flip_horizontal(image, box, present)
        image = photometric(rng, image, augment)
    target = np.zeros(5, np.float32)
    if present:
        target[:4] = from_xyxy(box.astype(np.float32), box_format)
        target[4] = 1.0
    return np.ascontiguousarray(image), target, np.int32(sample.label)


__all__ = ["AUGMENTS", "Augment", "augment_example", "flip_horizontal", "get_augment",
           "noise_table", "parse_key_values", "photometric", "random_window", "rotate"]
