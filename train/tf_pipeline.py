"""The ``tf`` input pipeline: every sample decoded once into a store, then augmented in
TensorFlow ops, so no Python (and no GIL) runs per element.

    python (train.pipeline, the reference; default on CPU):
        index -> tf.numpy_function: source[i] (decode / compose) -> data.augment (numpy)
    tf (this module; default when training on a GPU):
        source[i] once per index, in a thread pool -> ``DecodedStore`` (memory or disk)
        shuffled indices -> batch -> draw all parameters for the batch at once (vectorized)
        -> per sample: read the pixels, rotate/cut/pad/resize (train.tf_augment.geometry)
        -> batch -> flip + photometric chain on the batch (train.tf_augment.finish)

Storing a source is exact, not an approximation: a source's sample ``i`` is a pure function
of (seed, i) (``data.sources.Source``), so the python path also sees the same decoded (or
synthesized, or paste-composed) sample ``i`` every epoch; only the augmentation is drawn
anew each epoch, here as well. Images are decoded by the source, through ``data.images``;
the store holds raw uint8 pixels: in memory (one flat buffer, sliced per sample) when they
fit ``memory_budget()``, else one
serialized tensor per sample on disk (``--cache-dir``, kept for later runs of the same
data; without it a temporary folder removed at exit). Indices are shuffled, not pixels,
so every epoch is a full shuffle, as in the python path, from memory and from disk alike.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.augment import Augment, get_augment
from data.images import ImageError
from runtime.contract import check_box_format, from_xyxy

log = logging.getLogger(__name__)

PIPELINES = ("auto", "python", "tf")
_META = "store.npz"  # written last: a disk store without it is incomplete


def resolve_pipeline(name: str, on_gpu: bool, augment: Augment | None) -> str:
    """``python`` or ``tf`` for ``--input-pipeline NAME``.

    ``auto`` is ``tf`` on a GPU and ``python`` (the reference) on CPU. Measured on 2 cores
    (BENCHMARKS.md section 9): from 1 to 2 threads the tf path went 854 -> 1656 images/s, the
    python path from decoded images 1980 -> 2025 (its Python parts hold the GIL: it stops
    near 2,000 whatever the core count, too few for a GPU), but per CPU-second the python
    path is 2.2x faster (OpenCV's uint8 kernels), so a CPU run keeps it. An augmentation the
    tf path does not implement makes ``auto`` fall back to python with a warning, and an
    explicit ``tf`` a ValueError.
    """
    from train.tf_augment import unsupported

    if name not in PIPELINES:
        raise ValueError(f"unknown input pipeline {name!r}; valid: {', '.join(PIPELINES)}")
    chosen = ("tf" if on_gpu else "python") if name == "auto" else name
    missing = unsupported(augment) if chosen == "tf" else []
    if missing and name == "tf":
        raise ValueError(f"--input-pipeline tf does not implement the augmentation(s) "
                         f"{', '.join(missing)}; use --input-pipeline python or turn them off")
    if missing:
        log.warning("the tf input pipeline does not implement %s: using the python pipeline",
                    ", ".join(missing))
        return "python"
    return chosen


def memory_budget() -> int:
    """Bytes an in-memory store may take: a quarter of the memory available now."""
    try:
        text = Path("/proc/meminfo").read_text()
        available = int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M).group(1)) * 1024
    except (OSError, AttributeError):
        available = 8 * 2**30
    return available // 4


def cache_key(*parts: Any) -> str:
    """A short, stable folder name for a disk store of the data described by ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------- store
@dataclass
class DecodedStore:
    """Every usable sample of a source, decoded once.

    Attributes:
        heights, widths: (n,) int32 image sizes.
        boxes: (n, 4) float32 normalized x1, y1, x2, y2 (zeros for negatives).
        labels: (n,) int32 label indices (0: no object).
        where: ``memory`` or the store's folder.
        pixels: the flat uint8 tensor of every image (memory) or None.
        offsets: (n,) int64 start of each image in ``pixels`` (memory).
    """

    heights: np.ndarray
    widths: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    where: str
    pixels: Any = None
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: Any) -> Any:
        """TF ops: the (h, w, 3) uint8 pixels of sample ``index`` (a scalar int64 tensor)."""
        import tensorflow as tf

        h, w = tf.gather(self.heights, index), tf.gather(self.widths, index)
        if self.pixels is not None:
            start = tf.gather(self.offsets, index)
            flat = tf.slice(self.pixels, tf.reshape(start, [1]), tf.reshape(tf.cast(h * w * 3, tf.int64), [1]))
            return tf.reshape(flat, tf.stack([h, w, 3]))
        path = tf.strings.join([self.where, "/", tf.strings.as_string(index, width=7, fill="0"), ".t"])
        return tf.ensure_shape(tf.io.parse_tensor(tf.io.read_file(path), tf.uint8), (None, None, 3))


def _decode(source: Any, threads: int, keep: Any) -> list[tuple]:
    """Decode every sample in a thread pool (OpenCV releases the GIL); ``keep(i, image)``
    takes the pixels, the metadata is returned. An unreadable image is logged and left out."""
    def load(i: int) -> Any:
        try:
            s = source[i]
        except ImageError as err:
            log.warning("skipping training image %d: %s", i, err)
            return None
        present = int(s.label) > 0
        box = np.asarray(s.box, np.float32) if present else np.zeros(4, np.float32)
        return np.ascontiguousarray(s.image, np.uint8), box, int(s.label)

    meta = []
    with ThreadPoolExecutor(threads) as pool:
        for item in pool.map(load, range(len(source))):
            if item is not None:
                image, box, label = item
                keep(len(meta), image)
                meta.append((image.shape[0], image.shape[1], box, label))
    if not meta:
        raise ValueError("no training image could be decoded; check the data")
    return meta


def _arrays(meta: list[tuple]) -> dict[str, np.ndarray]:
    return {"heights": np.array([m[0] for m in meta], np.int32),
            "widths": np.array([m[1] for m in meta], np.int32),
            "boxes": np.stack([m[2] for m in meta]).astype(np.float32),
            "labels": np.array([m[3] for m in meta], np.int32)}


def decoded_store(source: Any, *, cache_dir: str | Path | None = None, key: str = "",
                  threads: int | None = None, budget: int | None = None) -> DecodedStore:
    """Decode ``source`` once into memory (when it fits ``budget``) or a disk store.

    A disk store under ``cache_dir/key`` is written once (into a temporary folder renamed
    when complete) and reused afterwards.
    """
    import tensorflow as tf

    threads = threads or max(1, len(os.sched_getaffinity(0)))
    n = len(source)
    probe = [source[i].image.nbytes for i in range(min(n, 16))]
    estimate = int(np.mean(probe) * n) if probe else 0
    budget = memory_budget() if budget is None else int(budget)
    if cache_dir is None and estimate <= budget:
        images: list[np.ndarray | None] = []
        meta = _decode(source, threads, lambda i, image: images.append(image.reshape(-1)))
        sizes = np.array([im.size for im in images], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # One flat buffer, each decoded image dropped once copied in, handed to TensorFlow
        # through DLPack (no copy): the store holds the decoded set once. tf.convert_to_tensor
        # copies it, a tf.Variable took three copies while built (18.5 GB peak for 4.6 GB),
        # and a sliced assign to one makes every later read copy the whole variable.
        total = int(sizes.sum())
        raw = np.empty(total + 64, np.uint8)
        flat = raw[(-raw.ctypes.data) % 64:][:total]  # 64-byte aligned, as TensorFlow wants
        for i, (start, size) in enumerate(zip(offsets, sizes)):
            flat[start:start + size] = images[i]
            images[i] = None
        pixels = tf.experimental.dlpack.from_dlpack(flat.__dlpack__())  # CPU, shares memory
        return DecodedStore(**_arrays(meta), where="memory", pixels=pixels, offsets=offsets)
    if cache_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="edgeloc-decoded-"))
        atexit.register(shutil.rmtree, folder, True)
        log.warning("decoded training set (~%.1f GiB) exceeds the memory budget (%.1f GiB): "
                    "storing it in %s for this run; pass --cache-dir to keep it for later runs",
                    estimate / 2**30, budget / 2**30, folder)
        path = folder / "store"
    else:
        path = Path(cache_dir).expanduser() / (key or "default")
    if not (path / _META).is_file():
        _write_disk_store(source, path, threads)
    with np.load(path / _META) as data:
        arrays = {k: data[k] for k in ("heights", "widths", "boxes", "labels")}
    return DecodedStore(**arrays, where=str(path))


def _write_disk_store(source: Any, path: Path, threads: int) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        def keep(i: int, image: np.ndarray) -> None:
            (tmp / f"{i:07d}.t").write_bytes(tf.io.serialize_tensor(image).numpy())

        meta = _decode(source, threads, keep)
        np.savez(tmp / _META, **_arrays(meta))
        if path.exists():  # another process finished the same store first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _Shard:
    """Every ``count``-th sample of a source, from ``index`` (one worker's input pipeline)."""

    def __init__(self, source: Any, count: int, index: int):
        self.source, self.indices = source, range(int(index), len(source), int(count))
        self.labels = source.labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.source[self.indices[i]]


# --------------------------------------------------------------------------------- dataset
def make_tf_dataset(
    source: Any,
    *,
    image_size: int,
    batch_size: int,
    box_format: str = "xyxy",
    augment: bool | str | Augment | None = False,
    shuffle: bool = False,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    shard: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
    cache_key: str = "",
    threads: int | None = None,
    store: DecodedStore | None = None,
) -> Any:
    """The tf pipeline's dataset, with ``train.pipeline.make_dataset``'s element structure:
    (images (B, S, S, 3) uint8, {"box": (B, 5) float32, "score": (B,) int32}).

    ``shard`` = (count, index) keeps every count-th sample (one multi-worker input
    pipeline); ``threads`` caps tf.data's private thread pool (default: its own) and the
    decoding threads; ``store`` reuses an already decoded store of ``source``.
    """
    import tensorflow as tf

    from train.tf_augment import draw_geometry, draw_photometric, finish, geometry, move_boxes

    check_box_format(box_format)
    if int(image_size) < 8 or int(batch_size) < 1:
        raise ValueError(f"need image_size >= 8 and batch_size >= 1, got {image_size}, {batch_size}")
    if len(source) == 0:
        raise ValueError("the data source is empty: nothing to load")
    aug = augment if isinstance(augment, Augment) else get_augment(augment)
    aug = aug or Augment(crop=0, flip=0, rotate=0, color=0, gamma=0, white_balance=0, grayscale=0,
                         blur=0, noise=0, jpeg=0)  # no augmentation: the plain contract resize
    size, b = int(image_size), int(batch_size)
    if store is None:
        if shard:  # each worker decodes and stores only its own part
            source = _Shard(source, *shard)
            cache_key = f"{cache_key}-shard{shard[1]}of{shard[0]}"
        store = decoded_store(source, cache_dir=cache_dir, key=cache_key, threads=threads)
    n = len(store)
    log.info("tf input pipeline: %d decoded samples in %s", n, store.where)
    heights, widths = tf.constant(store.heights), tf.constant(store.widths)
    boxes, labels = tf.constant(store.boxes), tf.constant(store.labels)

    def draw(indices: Any, seed_draw: Any) -> tuple[Any, ...]:  # a batch of indices (B,)
        present = tf.gather(labels, indices) > 0
        h, w, box = tf.gather(heights, indices), tf.gather(widths, indices), tf.gather(boxes, indices)
        geo = draw_geometry(tf.stack([tf.constant(seed, tf.int64), seed_draw]), aug, h, w, box, present)
        moved = move_boxes(box, present, h, w, geo)  # the boxes need no pixel
        return indices, geo, moved, tf.gather(labels, indices)

    def pixels(index: Any, geo: Any, box: Any, label: Any) -> tuple[Any, ...]:
        image = geometry(store.read(index), geo, size)
        return tf.ensure_shape(image, (size, size, 3)), box, label

    def finished(batch: Any, seed_draw: Any) -> tuple[Any, Any]:
        images, box, label = batch
        present = label > 0
        photo = draw_photometric(tf.stack([tf.constant(seed + 1, tf.int64), seed_draw]), aug,
                                 tf.shape(label)[0], size)
        images, box = finish(images, box, present, photo, size)  # the flip moves the box
        target = tf.concat([from_xyxy(box, box_format, xp=tf), tf.ones_like(box[:, :1])], 1)
        target = tf.where(present[:, None], target, tf.zeros_like(target))  # negatives: zeros
        return images, {"box": target, "score": label}

    ds = tf.data.Dataset.range(n)
    if shuffle:  # indices, not pixels: a full shuffle every epoch, from memory or disk
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Draw seeds, per batch: new every epoch, reproducible for a given seed. Only the
    # geometry goes through the per-sample stage; the photometric draw waits for the batch.
    seeds = [tf.data.Dataset.random(seed=seed + k, rerandomize_each_iteration=True) for k in (0, 1)]
    ds = tf.data.Dataset.zip(ds.batch(b, drop_remainder=drop_remainder), seeds[0])
    ds = ds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.map(pixels, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = tf.data.Dataset.zip(ds.batch(b, drop_remainder=drop_remainder), seeds[1])
    ds = ds.map(finished, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = int(threads)
        ds = ds.with_options(options)
    return ds


__all__ = ["DecodedStore", "PIPELINES", "cache_key", "decoded_store", "make_tf_dataset",
           "memory_budget", "resolve_pipeline"]
