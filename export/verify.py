"""Verify an exported file against its Keras model on held-out data, through the runtime,
and the policy around it: write nothing unverified, retry int8 with per-channel weights.

The exported file runs in ``runtime.Localizer`` (the code users run); the Keras model runs
on the same preprocessed pixels. A mean IoU drop over ``max_iou_drop`` fails the export.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export._load import LoadedModel
from export.calib import draw, run_source
from export.options import DEFAULT_MAX_IOU_DROP, VerifyOptions
from runtime._cli import raise_if_stopped
from runtime.atomic import staged
from runtime.contract import Contract, box_iou, to_xyxy
from runtime.errors import UserError
from runtime.quiet import native_output_captured

log = logging.getLogger(__name__)

_BATCH = 32
# The score gate: a class flip where Keras' top probability leads the next by SURE_MARGIN is
# no rounding (an int8 step is 1/256); a score head broken by quantization flips them all.
SURE_MARGIN = 0.3
MAX_SURE_FLIPS = 0.05


@dataclass
class Holdout:
    """Held-out images with ground truth and the Keras model's predictions on them.

    Attributes:
        pixels: (N, S, S, 3) uint8 model inputs.
        boxes: (N, 4) true boxes, normalized x1, y1, x2, y2.
        labels: (N,) true label indices (0 = no object).
        keras_box: (N, 4) Keras output boxes in the contract's box format.
        keras_score: (N, K) Keras class probabilities.
        box_format: the model's box format.
        info: source description (name, split, size).
        max_iou_drop: an export whose mean IoU is more than this below Keras' fails.
    """

    pixels: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    keras_box: np.ndarray
    keras_score: np.ndarray
    box_format: str
    info: dict[str, Any]
    max_iou_drop: float = DEFAULT_MAX_IOU_DROP

    @property
    def positives(self) -> np.ndarray:
        return self.labels > 0

    def iou(self, box: np.ndarray) -> np.ndarray:
        """IoU with the true boxes on images that hold an object."""
        pred = to_xyxy(np.asarray(box, np.float64), self.box_format)
        return box_iou(pred[self.positives], self.boxes[self.positives])


def keras_predict(model: Any, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the Keras model on uint8 pixels exactly as the serving graph does (cast to float)."""
    boxes, scores = [], []
    for i in range(0, len(pixels), _BATCH):
        out = model(pixels[i : i + _BATCH].astype(np.float32), training=False)
        boxes.append(np.asarray(out["box"]))
        scores.append(np.asarray(out["score"]))
    return np.concatenate(boxes), np.concatenate(scores)


def holdout_set(loaded: LoadedModel, options: VerifyOptions | Holdout | None) -> Holdout | None:
    """The test split of ``options.source`` (default: the run's training source), with the
    Keras model's predictions; a prebuilt ``Holdout`` is returned as is; None: no
    verification."""
    if options is None:
        return None
    if isinstance(options, Holdout):
        return options
    size, seed = options.size, options.seed
    source, info = run_source(
        options.source,
        config=loaded.config,
        split="test",
        size=size,
        data_dir=options.data_dir,
        seed=seed,
    )
    if info.get("kind") == "folder":
        raise UserError(
            "verification needs true boxes; pass --verify-data SOURCE (a data source "
            "with boxes, e.g. voc with --verify-dir) or --no-verify"
        )
    pixels, samples, _ = draw(
        source, min(size, len(source)), loaded.image_size, seed=seed, what="verification"
    )
    boxes = np.stack([s.box for s in samples]).astype(np.float64)  # (N, 4) xyxy
    labels = np.array([s.label for s in samples])
    if not (labels > 0).any():
        raise UserError(f"verification source {info['source']!r} has no images with an object")
    keras_box, keras_score = keras_predict(loaded.model, pixels)
    info = {**info, "size": len(pixels)}
    return Holdout(
        pixels, boxes, labels, keras_box, keras_score, loaded.box_format, info,
        options.max_iou_drop,
    )


@dataclass
class Verification:
    """How an exported file compares with the Keras model on the held-out set."""

    format: str
    precision: str
    size_bytes: int
    mean_iou: float
    corloc: float
    keras_iou: float
    iou_drop: float
    max_box_diff: float
    score_agreement: float
    max_score_diff: float
    max_iou_drop: float
    n: int
    sure_flips: float = 0.0  # share of the images Keras is sure of whose class the file changes

    @property
    def passed(self) -> bool:
        return self.iou_drop <= self.max_iou_drop and self.sure_flips <= MAX_SURE_FLIPS

    @property
    def status(self) -> str:
        if self.passed:
            return "ok"
        if self.iou_drop > self.max_iou_drop:
            return f"FAILED: IoU drop {self.iou_drop:.3f} > {self.max_iou_drop:.3f}"
        return f"FAILED: class changed on {self.sure_flips:.0%} of the images Keras is sure of"


def run_exported(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw (box, score) of an exported file through the runtime's Localizer."""
    from runtime.localizer import Localizer

    with native_output_captured():  # XNNPACK announces itself on stderr
        loc = Localizer.load(path, threads=1)
    boxes, scores = [], []
    for i in range(0, len(pixels), _BATCH):
        box, score = loc.invoke(pixels[i : i + _BATCH])
        boxes.append(np.asarray(box, np.float64))
        scores.append(np.asarray(score, np.float64))
    return np.concatenate(boxes), np.concatenate(scores)


def verify_model(path: Path, holdout: Holdout, *, fmt: str, precision: str) -> Verification:
    """Run ``path`` on the held-out set and compare it with the Keras model (failing above
    ``holdout.max_iou_drop``)."""
    box, score = run_exported(Path(path), holdout.pixels)
    keras_iou = float(holdout.iou(holdout.keras_box).mean())
    iou = holdout.iou(box)
    agree = np.argmax(score, axis=1) == np.argmax(holdout.keras_score, axis=1)
    top2 = np.sort(holdout.keras_score, axis=1)[:, -2:]
    sure = top2[:, 1] - top2[:, 0] >= SURE_MARGIN
    result = Verification(
        format=fmt,
        precision=precision,
        size_bytes=Path(path).stat().st_size,
        mean_iou=float(iou.mean()),
        corloc=float((iou >= 0.5).mean()),
        keras_iou=keras_iou,
        iou_drop=keras_iou - float(iou.mean()),
        max_box_diff=float(np.abs(box - holdout.keras_box).max()),
        score_agreement=float(agree.mean()),
        max_score_diff=float(np.abs(score - holdout.keras_score).max()),
        max_iou_drop=float(holdout.max_iou_drop),
        n=len(holdout.pixels),
        sure_flips=float((sure & ~agree).sum() / max(1, sure.sum())),
    )
    log.info(
        "%s %s: mean IoU %.4f (Keras %.4f), %s",
        fmt,
        precision,
        result.mean_iou,
        keras_iou,
        result.status,
    )
    return result


class VerificationFailed(RuntimeError):
    """The exported model lost more accuracy than allowed; the file was not kept.

    ``args[0]`` is the ``ExportResult``, with its verification.
    """


@dataclass
class ExportResult:
    """What one export produced.

    Attributes:
        path: the model file (only there when ``ok``).
        format: ``tflite`` or ``onnx``.
        precision: ``fp32``, ``fp16``, ``dynamic`` or ``int8``.
        size_bytes: file size.
        contract: the contract embedded in the file.
        verification: accuracy against the Keras model (None when verification was off).
        seconds: wall time of conversion and verification.
    """

    path: Path
    format: str
    precision: str
    size_bytes: int
    contract: Contract
    verification: Verification | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.passed


def write_verified(
    out: Path, data: bytes, result: ExportResult, holdout: Holdout | None, t0: float
) -> ExportResult:
    """Write ``data`` beside ``out``, verify it there (if ``holdout``), then rename it into place.

    A failed verification raises VerificationFailed and leaves nothing at ``out``.
    """
    with staged(out) as tmp:
        tmp.write_bytes(data)
        if holdout is not None:
            result.verification = verify_model(
                tmp, holdout, fmt=result.format, precision=result.precision
            )
        result.seconds = time.perf_counter() - t0
        if not result.ok:
            raise VerificationFailed(result)
        raise_if_stopped()  # a SIGTERM or Ctrl-C that TensorFlow swallowed still stops it
    log.info("wrote %s (%d bytes, %.1f s)", out, len(data), result.seconds)
    return result


def per_channel_choices(per_channel: bool | None, precision: str, verify: bool) -> list[bool]:
    """int8 weight scales to try in order: per-tensor first (smallest file), then per-channel
    if the per-tensor model fails verification; an explicit choice is tried alone."""
    if precision != "int8":
        return [False]
    if per_channel is not None:
        return [bool(per_channel)]
    return [False, True] if verify else [False]


def write_first_verified(
    build: Callable[[bool], tuple[bytes, ExportResult]],
    *,
    per_channel: bool | None,
    precision: str,
    out: Path,
    holdout: Holdout | None,
    t0: float,
) -> ExportResult:
    """Build (``build(per_channel) -> (bytes, result)``) and ``write_verified`` an export; an
    int8 model whose per-tensor weights fail verification is rebuilt per channel."""
    choices = per_channel_choices(per_channel, precision, holdout is not None)
    for attempt, channelwise in enumerate(choices):
        data, result = build(channelwise)
        try:
            return write_verified(out, data, result, holdout, t0)
        except VerificationFailed:
            if attempt == len(choices) - 1:
                raise
            log.warning(
                "%s int8 with per-tensor weights lost %.4f mean IoU; trying per-channel weights",
                result.format,
                result.verification.iou_drop,
            )
    raise AssertionError("unreachable")
