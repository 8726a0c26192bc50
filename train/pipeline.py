"""The tf.data input pipeline: parallel loading, augmentation, the preprocessing contract,
batching and prefetch.

Each element is loaded in Python (``load_example``) inside ``tf.numpy_function`` by a
parallel ``map``; OpenCV releases the GIL, so loading uses every core. Per element:

1. ``source[i]``: an RGB image at its own size and a normalized x1, y1, x2, y2 box;
2. box-moving augmentation on the full-resolution image: a random window (scale, crop,
   aspect change, translate with padding) that always keeps the whole box, and the box is
   re-expressed in the window;
3. ``runtime.contract.preprocess``: the one resize every model input goes through;
4. horizontal flip (moves the box) and photometric augmentation (brightness, contrast,
   saturation, hue, blur, noise: never touches the box) on the small image.
"""

from __future__ import annotations

import atexit
import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from runtime.contract import check_box_format, from_xyxy, preprocess
from train.assets import jitter_colors
from train.sources import Source


class _Shutdown:
    """Lets loader threads go idle before Python shuts down.

    tf.data keeps calling ``numpy_function`` from its own threads to refill buffers; if
    one of them needs the GIL while the interpreter is finalizing (a live iterator at
    exit), the process hangs. At exit we make every further load return instantly and
    wait until none is running, so the buffers fill up and the threads sleep.
    """

    def __init__(self) -> None:
        self.closing = False
        self.running = 0
        self.lock = threading.Lock()
        self.registered = False

    def register(self) -> None:
        if not self.registered:
            self.registered = True
            atexit.register(self.drain)

    def drain(self, timeout: float = 5.0) -> None:
        self.closing = True
        deadline, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.running:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.2:
                return
            time.sleep(0.01)


_SHUTDOWN = _Shutdown()


@dataclass(frozen=True)
class Augment:
    """Augmentation settings; probabilities are per image.

    Attributes:
        crop: probability of a random window (zoom in/out, aspect change, translate).
        scale: window side range as a share of the image side (above 1 zooms out).
        aspect: max log-ratio between the window's x and y scales.
        outside: how far (share of the image side) a window may reach past the image;
            the part outside is filled with ``fill`` (a grey level; None: a random grey).
        flip: probability of a horizontal flip.
        color: probability of brightness/contrast/saturation/hue jitter.
        color_strength: scales the jitter ranges (1.0: +-30% contrast, +-40 brightness).
        blur: probability of a small Gaussian blur.
        noise: probability of additive Gaussian noise (sigma 2..10 grey levels).
    """

    crop: float = 0.7
    scale: tuple[float, float] = (0.6, 1.2)
    aspect: float = 0.15
    outside: float = 0.15
    fill: int | None = None
    flip: float = 0.5
    color: float = 0.8
    color_strength: float = 0.8
    blur: float = 0.15
    noise: float = 0.2

    @classmethod
    def geometry_only(cls, **changes: Any) -> Augment:
        """Only the box-moving augmentations."""
        return cls(**{"color": 0.0, "blur": 0.0, "noise": 0.0, **changes})

    @classmethod
    def photometric_only(cls, **changes: Any) -> Augment:
        """Only augmentations that leave the box where it is."""
        return cls(**{"crop": 0.0, "flip": 0.0, **changes})


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
        grey = int(rng.integers(0, 256)) if aug.fill is None else int(aug.fill)
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_CONSTANT, value=(grey, grey, grey))
    if not present:
        return crop, box
    new = (np.array([bx1, by1, bx2, by2]) - (x0, y0, x0, y0)) / (x1 - x0, y1 - y0, x1 - x0, y1 - y0)
    return crop, np.clip(new, 0.0, 1.0).astype(np.float32)


def flip_horizontal(image: np.ndarray, box: np.ndarray, present: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image left-right and the box with it."""
    if present:
        box = np.array([1.0 - box[2], box[1], 1.0 - box[0], box[3]], np.float32)
    return cv2.flip(image, 1), box


@functools.lru_cache(maxsize=2)
def _noise_table(side: int) -> np.ndarray:
    """Fixed Gaussian noise; random windows of it are much cheaper than fresh draws."""
    return np.random.default_rng(1234).standard_normal((side, side, 3)).astype(np.float32)


def photometric(rng: np.random.Generator, image: np.ndarray, aug: Augment) -> np.ndarray:
    """Brightness, contrast, saturation, hue, blur and noise; the geometry is untouched."""
    if rng.random() < aug.color:
        image = jitter_colors(rng, image, strength=aug.color_strength)
    if rng.random() < aug.blur:
        k = 3 if rng.random() < 0.7 else 5
        image = cv2.GaussianBlur(image, (k, k), 0)
    if rng.random() < aug.noise:
        h, w = image.shape[:2]
        table = _noise_table(max(512, h, w))
        oy, ox = rng.integers(0, table.shape[0] - h + 1), rng.integers(0, table.shape[1] - w + 1)
        noisy = image + rng.uniform(2, 10) * table[oy : oy + h, ox : ox + w]
        image = np.clip(noisy, 0, 255).astype(np.uint8)
    return image


def load_example(
    source: Source,
    index: int,
    image_size: int,
    *,
    box_format: str = "xyxy",
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.int32]:
    """One element: ((S, S, 3) uint8 image, (5,) float32 box + presence, int32 label)."""
    sample = source[int(index)]
    present = int(sample.label) > 0
    box = np.asarray(sample.box, np.float32) if present else np.zeros(4, np.float32)
    image = sample.image
    if augment is not None:
        rng = rng if rng is not None else np.random.default_rng()
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


def make_dataset(
    source: Source,
    *,
    image_size: int,
    batch_size: int,
    box_format: str = "xyxy",
    augment: bool | Augment = False,
    shuffle: bool = False,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    parallel: int | None = None,
) -> Any:
    """A tf.data.Dataset of (images (B, S, S, 3) uint8, {"box": (B, 5) float32, "score": (B,) int32}).

    ``box`` holds the 4 numbers in ``box_format`` and a presence flag (1 object, 0 none);
    negatives have an all-zero box. ``augment`` is True (default ``Augment()``), False or an
    ``Augment``. Order and augmentation are reproducible for a given ``seed``; a shuffled
    or augmented dataset draws a new order and new augmentations every epoch.
    ``parallel`` caps the loading threads (default: tf.data's autotuning). Sets OpenCV to
    one thread per caller (process-wide), as tf.data provides the parallelism.
    """
    import tensorflow as tf  # heavy: only when a dataset is built

    check_box_format(box_format)
    if int(image_size) < 8 or int(batch_size) < 1:
        raise ValueError(f"need image_size >= 8 and batch_size >= 1, got {image_size}, {batch_size}")
    n = len(source)
    if n == 0:
        raise ValueError("the data source is empty: nothing to load")
    aug = Augment() if augment is True else (augment or None)
    size = int(image_size)
    _SHUTDOWN.register()
    # tf.data already loads images in parallel; OpenCV's own thread pool on top of that only
    # oversubscribes the cores (measured: 15% more CPU per image on 2 cores).
    cv2.setNumThreads(1)

    def load(index: np.int64, draw: np.int64) -> tuple[np.ndarray, np.ndarray, np.int32]:
        if _SHUTDOWN.closing:  # the interpreter is exiting: fill buffers with blanks, fast
            return np.zeros((size, size, 3), np.uint8), np.zeros(5, np.float32), np.int32(0)
        with _SHUTDOWN.lock:
            _SHUTDOWN.running += 1
        try:
            rng = np.random.default_rng([int(seed), int(draw) & 0x7FFFFFFFFFFFFFFF, int(index)])
            return load_example(source, int(index), size, box_format=box_format, augment=aug, rng=rng)
        finally:
            with _SHUTDOWN.lock:
                _SHUTDOWN.running -= 1

    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    # One random draw per element, different every epoch (also without repeat), seeded.
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(indices, draws)
    if repeat:
        ds = ds.repeat()

    def tf_load(index: Any, draw: Any) -> tuple[Any, Any]:
        image, box, label = tf.numpy_function(load, [index, draw], [tf.uint8, tf.float32, tf.int32])
        image.set_shape((size, size, 3))
        box.set_shape((5,))
        label.set_shape(())
        return image, {"box": box, "score": label}

    calls = tf.data.AUTOTUNE if parallel is None else int(parallel)
    ds = ds.map(tf_load, num_parallel_calls=calls, deterministic=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
