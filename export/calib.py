"""One calibration source for both formats: shuffled, preprocessed samples from any data source.

``calibration_set`` draws ``size`` images from a training source (synthetic, csv, voc, ...)
or a plain folder of images, and preprocesses them with ``runtime.contract.preprocess``,
the code the runtime runs. The TFLite representative dataset and the ONNX
``CalibrationDataReader`` are thin wrappers over ``CalibrationSet.batches()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.catalog import SOURCES, open_source, reads_folder
from data.mix import FILE_FORMATS
from data.sources import ImageFolder, Sample
from export.options import DEFAULT_CALIB_SIZE, DEFAULT_SCREEN, CalibrationOptions, check_size
from runtime.contract import preprocess
from runtime.errors import UserError

log = logging.getLogger(__name__)

_MAX_SCREENED = 0.05  # never drop more than this share of the set


def run_source(
    spec: str | None,
    *,
    config: dict[str, Any],
    split: str,
    size: int,
    data_dir: str | Path | None = None,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Build a data source from ``--calib``/``--verify-data`` or, if None, the run's training data.

    Returns (source, description): the description goes into the contract.
    """
    data_cfg = config.get("data", {}) or {}
    given_dir = data_dir  # the user's --calib-dir / --verify-dir, not the run's own
    if spec is None:
        spec = data_cfg.get("source")
        if not spec:
            raise UserError(
                "the model has no config.json naming its training data; pass --calib "
                "SOURCE (a source name with --calib-dir, or a folder of images)"
            )
        if data_dir is None:
            data_dir = data_cfg.get("data_dir")
        # The run's own splits: same seed and hold-out share as in training.
        split_options = {k: data_cfg[k] for k in ("seed", "multi", "val_fraction") if k in data_cfg}
    else:
        split_options = {}
    desc: dict[str, Any] = {"source": spec, "split": split}
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)  # a run may mix sources
    names = [n.split(":")[0] for item in items for n in str(item).split(",")]
    if not all(n in SOURCES for n in names):
        if len(items) > 1:
            unknown = sorted(n for n in names if n not in SOURCES)
            raise UserError(f"unknown data source(s) {', '.join(unknown)} in {spec!r}; "
                            f"known: {', '.join(sorted(SOURCES))}")
        folder = Path(items[0]).expanduser()
        if not folder.exists():
            raise UserError(
                f"calibration/verification source {spec!r} is neither a data source "
                f"({', '.join(sorted(SOURCES))}) nor an existing folder of images"
            )
        if not folder.is_dir():
            raise UserError(f"{folder} is a file; pass a folder of images or a source name")
    if given_dir is not None and all(n in SOURCES for n in names) and not any(
        reads_folder(n) for n in names
    ):  # a synthetic source makes its own images: the folder would be ignored
        flag, source_flag = ("--calib-dir", "--calib") if split == "train" else (
            "--verify-dir", "--verify-data")
        raise UserError(
            f"{flag} {given_dir} is read only by a file source ({', '.join(FILE_FORMATS)}), "
            f"but the data source is {spec!r}: pass {source_flag} csv (or voc, ...) with it"
            + (", or --calib FOLDER for a folder of plain images" if split == "train" else "")
        )
    options: dict[str, Any] = {"seed": 0, **split_options, "size": size}
    if data_dir is not None:
        desc["data_dir"] = str(data_dir)
    try:
        source = open_source(spec, split=split, data_dir=data_dir, folders=True, **options)
    except (ValueError, FileNotFoundError, OSError) as err:
        raise UserError(
            f"cannot open data source {spec!r}: {err} (to use other data pass --calib SOURCE "
            "--calib-dir PATH, and --verify-data/--verify-dir)"
        ) from None
    if isinstance(source, ImageFolder):
        desc = {"source": str(source.folder), "kind": "folder", "split": "all"}
    if len(source) == 0:
        where = (
            f" in {desc['data_dir']}" if desc.get("data_dir") and desc["data_dir"] != spec else ""
        )
        raise UserError(
            f"data source {spec!r}{where} holds no images; point --calib "
            "(or --calib-dir / --verify-dir) at data with images"
        )
    return source, desc


@dataclass
class CalibrationSet:
    """Preprocessed calibration images.

    Attributes:
        images: (N, S, S, 3) uint8 RGB, the model's input pixels.
        info: what the contract records (source, data_dir, split, size, seed).
        skipped: names of samples that could not be read.
    """

    images: np.ndarray
    info: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, dtype: str = "uint8") -> Iterator[np.ndarray]:
        """Yield (1, S, S, 3) inputs in ``dtype`` (uint8 pixels, int8 = pixel - 128, float32).

        The first image gets one black and one white pixel, so the calibrated input range is
        exactly 0..255 and the quantized input step is exactly one pixel value (scale 1).
        """
        for i, image in enumerate(self.images):
            if i == 0:
                image = image.copy()
                image[0, 0], image[0, 1] = 0, 255
            yield to_input(image[None], dtype)


def to_input(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 pixels (N, S, S, 3) -> the exported model's input dtype, per the contract."""
    if dtype == "uint8":
        return pixels
    if dtype == "int8":
        return (pixels.astype(np.int16) - 128).astype(np.int8)
    return pixels.astype(np.float32)


def draw(
    source: Any, size: int, image_size: int, *, seed: int = 0, what: str = "calibration"
) -> tuple[np.ndarray, list[Sample], list[str]]:
    """Draw ``size`` readable samples in a seeded shuffled order, preprocessed to ``image_size``.

    Returns (pixels (N, S, S, 3) uint8, the samples (images dropped), names of unreadable ones).
    """
    order = np.random.default_rng(seed).permutation(len(source))
    pixels, kept, skipped = [], [], []
    for index in order:
        if len(pixels) == size:
            break
        name = f"sample {index}"
        try:
            sample = source[int(index)]
            name = sample.name or name
            image = preprocess(sample.image, image_size)  # (S, S, 3)
        except (ValueError, OSError, cv2.error) as err:
            skipped.append(f"{name}: {err}")
            continue
        pixels.append(image)
        kept.append(
            Sample(
                np.empty(0, np.uint8),
                np.asarray(sample.box, np.float32),
                int(sample.label),
                sample.name,
            )
        )
    if skipped:
        log.warning("%s: skipped %d unreadable samples (first: %s)", what, len(skipped), skipped[0])
    if not pixels:
        raise UserError(
            f"the {what} source has no readable images ({len(skipped)} unreadable, "
            f"first: {skipped[0] if skipped else '-'}); pass another source or fix the files"
        )
    return np.stack(pixels), kept, skipped


def calibration_set(
    spec: str | None,
    *,
    config: dict[str, Any],
    image_size: int,
    size: int | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    model: Any = None,
    screen_factor: float = DEFAULT_SCREEN,
) -> CalibrationSet:
    """Draw ``size`` shuffled training images from ``spec`` (default: the run's training data).

    ``size=None`` takes ``DEFAULT_CALIB_SIZE`` images, or all of a smaller source; an
    explicit ``size`` larger than the source is an error.

    With ``model`` (the Keras model), images on which its activations explode are left out
    (see ``screen``).
    """
    if size is not None:
        check_size(size, "--calib-size")
    source, info = run_source(
        spec,
        config=config,
        split="train",
        size=size or DEFAULT_CALIB_SIZE,
        data_dir=data_dir,
        seed=seed,
    )
    explicit = size is not None
    if size is None:
        size = min(DEFAULT_CALIB_SIZE, len(source))
    if len(source) < size:
        raise UserError(
            f"calibration source {info['source']!r} has only {len(source)} images, "
            f"fewer than --calib-size {size}; pass --calib-size {len(source)} or more data"
        )
    pixels, _, skipped = draw(source, size, image_size, seed=seed)
    if len(pixels) < size and explicit:  # the default takes what a small source can give
        raise UserError(
            f"calibration source {info['source']!r} gave only {len(pixels)} readable "
            f"images ({len(skipped)} unreadable), fewer than --calib-size {size}; "
            f"pass --calib-size {len(pixels)} or fix the files"
        )
    info = {**info, "size": int(len(pixels)), "seed": seed}
    log.info("calibration: %d images from %s", len(pixels), info["source"])
    calib = CalibrationSet(pixels, info, skipped)
    return screen(calib, model, screen_factor) if model is not None else calib


def calibration_for(loaded: Any, options: CalibrationOptions | CalibrationSet) -> CalibrationSet:
    """The calibration set of a loaded run (its config and input size, screened on its
    model); a prebuilt ``CalibrationSet`` (shared by several exports) is returned as is."""
    if isinstance(options, CalibrationSet):
        return options
    return calibration_set(
        options.source,
        config=loaded.config,
        image_size=loaded.image_size,
        size=options.size,
        data_dir=options.data_dir,
        seed=options.seed,
        model=loaded.model,
        screen_factor=options.screen,
    )


def activation_peaks(model: Any, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, L) peak |activation| of each image at each top-level layer of the Keras model."""
    import keras

    # The outer graph's tensor of each top-level layer (a nested backbone's own ``.output``
    # belongs to its inner graph, so take the node where the outer model calls it).
    tensors = [
        layer._inbound_nodes[-1].output_tensors[0]
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and layer._inbound_nodes
    ]
    # One input tensor, not the list ``model.inputs``: the probe is called with one array,
    # and a list-shaped input makes Keras warn on every call.
    probe = keras.Model(model.inputs[0], [t for t in tensors if len(t.shape) >= 2])
    peaks = []
    for i in range(0, len(images), batch):
        outs = probe(images[i : i + batch].astype(np.float32), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        peaks.append(
            np.stack([np.abs(np.asarray(o)).reshape(len(o), -1).max(axis=1) for o in outs], 1)
        )
    return np.concatenate(peaks)  # (N, L)


def screen(calib: CalibrationSet, model: Any, factor: float = DEFAULT_SCREEN) -> CalibrationSet:
    """Drop the rare images on which the float model's activations explode.

    Min/max calibration takes each tensor's range from the most extreme image. A handful
    of images (e.g. an unusual background) can push a layer's activations 50x above every
    other image; their range then costs all ordinary images their int8 precision, while
    the float model's own answer on those images is already saturated. An image is dropped
    when some layer peaks over ``factor`` times that layer's median peak; at most 5% of the
    set is dropped (the most extreme first). ``factor <= 0`` keeps everything.
    """
    if factor <= 0 or len(calib) < 20:
        return calib
    peaks = activation_peaks(model, calib.images)  # (N, L)
    ratio = (peaks / np.maximum(np.median(peaks, axis=0), 1e-12)).max(axis=1)  # (N,)
    worst = np.argsort(ratio)[::-1][: int(len(calib) * _MAX_SCREENED)]
    drop = [int(i) for i in worst if ratio[i] > factor]
    if not drop:
        return CalibrationSet(calib.images, {**calib.info, "screened_out": 0}, calib.skipped)
    keep = np.setdiff1d(np.arange(len(calib)), drop)
    log.warning(
        "calibration: left out %d of %d images whose activations peak %.0f-%.0fx above "
        "the median (they would set the int8 ranges for every image)",
        len(drop),
        len(calib),
        ratio[drop].min(),
        ratio[drop].max(),
    )
    info = {
        **calib.info,
        "size": int(len(keep)),
        "screened_out": len(drop),
        "screen_factor": factor,
    }
    return CalibrationSet(calib.images[keep], info, calib.skipped)
