"""The tf.data input pipeline: parallel loading, augmentation, the preprocessing contract,
batching and prefetch.

Each element is loaded in Python (``load_example``) inside ``tf.numpy_function`` by a
parallel ``map``; OpenCV releases the GIL, so loading uses every core. Per element:
``source[i]`` (an RGB image at its own size and a normalized x1, y1, x2, y2 box), then
``data.augment.augment_example``: box-moving geometry on the full-resolution image, the
contract's resize, flip and photometric/camera randomization on the small image.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from data.augment import Augment, augment_example, get_augment
from data.images import ImageError
from data.sources import Source
from runtime.contract import check_box_format


log = logging.getLogger(__name__)
_RETRIES = 20  # consecutive unreadable images before a run gives up


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
    return augment_example(sample, image_size, box_format=box_format, augment=augment, rng=rng)


def make_dataset(
    source: Source,
    *,
    image_size: int,
    batch_size: int,
    box_format: str = "xyxy",
    augment: bool | str | Augment = False,
    shuffle: bool = False,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    parallel: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Any:
    """A tf.data.Dataset of (images (B, S, S, 3) uint8, {"box": (B, 5) float32, "score": (B,) int32}).

    ``box`` holds the 4 numbers in ``box_format`` and a presence flag (1 object, 0 none);
    negatives have an all-zero box. ``augment`` is a profile name of ``data.augment.AUGMENTS``,
    True (``basic``), False or an ``Augment``. An image that fails to load at training time
    (possible for sets too large to check up front) is logged and replaced by the next one. Order and augmentation are reproducible for a given ``seed``; a shuffled
    or augmented dataset draws a new order and new augmentations every epoch.
    ``parallel`` caps the loading threads (default: tf.data's autotuning). Sets OpenCV to
    one thread per caller (process-wide), as tf.data provides the parallelism. ``shard`` =
    (count, index) keeps every count-th sample: one worker's part of a multi-worker run.
    """
    import tensorflow as tf  # heavy: only when a dataset is built

    check_box_format(box_format)
    if int(image_size) < 8 or int(batch_size) < 1:
        raise ValueError(f"need image_size >= 8 and batch_size >= 1, got {image_size}, {batch_size}")
    n = len(source)
    if n == 0:
        raise ValueError("the data source is empty: nothing to load")
    aug = augment if isinstance(augment, Augment) else get_augment(augment)
    size = int(image_size)
    _SHUTDOWN.register()
    # tf.data already loads images in parallel; OpenCV's own thread pool on top of that only
    # oversubscribes the cores (measured: 15% more CPU per image on 2 cores).
    cv2.setNumThreads(1)

    bad: set[int] = set()

    def load(index: np.int64, draw: np.int64) -> tuple[np.ndarray, np.ndarray, np.int32]:
        if _SHUTDOWN.closing:  # the interpreter is exiting: fill buffers with blanks, fast
            return np.zeros((size, size, 3), np.uint8), np.zeros(5, np.float32), np.int32(0)
        with _SHUTDOWN.lock:
            _SHUTDOWN.running += 1
        try:
            rng = np.random.default_rng([int(seed), int(draw) & 0x7FFFFFFFFFFFFFFF, int(index)])
            for attempt in range(_RETRIES):
                i = (int(index) + attempt) % n
                try:
                    return load_example(source, i, size, box_format=box_format, augment=aug, rng=rng)
                except ImageError as err:  # one bad file never stops a run
                    if i not in bad:
                        bad.add(i)
                        log.warning("skipping training image %d: %s", i, err)
            raise ValueError(f"{_RETRIES} training images in a row failed to load; check the data")
        finally:
            with _SHUTDOWN.lock:
                _SHUTDOWN.running -= 1

    indices = tf.data.Dataset.range(n)
    if shard:  # before the shuffle: each worker loads only its own samples
        indices = indices.shard(*shard)
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
