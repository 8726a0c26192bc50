"""Verify an exported file against its Keras model on held-out data, through the runtime.

The exported file runs in ``runtime.Localizer`` (the code users run); the Keras model runs
on the same preprocessed pixels. A mean IoU drop over ``max_iou_drop`` fails the export.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export._io import LoadedModel
from runtime.errors import UserError
from export.calib import draw, run_source
from runtime.contract import box_iou, to_xyxy

log = logging.getLogger(__name__)

DEFAULT_VERIFY_SIZE = 200
_BATCH = 32


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
    """

    pixels: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    keras_box: np.ndarray
    keras_score: np.ndarray
    box_format: str
    info: dict[str, Any]

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


def holdout_set(
    loaded: LoadedModel,
    spec: str | None = None,
    *,
    data_dir: str | Path | None = None,
    size: int = DEFAULT_VERIFY_SIZE,
    seed: int = 0,
) -> Holdout:
    """The test split of ``spec`` (default: the run's training source), with Keras predictions."""
    source, info = run_source(
        spec, config=loaded.config, split="test", size=size, data_dir=data_dir, seed=seed
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
    return Holdout(pixels, boxes, labels, keras_box, keras_score, loaded.box_format, info)


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

    @property
    def passed(self) -> bool:
        return self.iou_drop <= self.max_iou_drop

    @property
    def status(self) -> str:
        if self.passed:
            return "ok"
        return f"FAILED: IoU drop {self.iou_drop:.3f} > {self.max_iou_drop:.3f}"


def run_exported(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw (box, score) of an exported file through the runtime's Localizer."""
    from export._graph import native_output_captured
    from runtime.localizer import Localizer

    with native_output_captured():  # XNNPACK announces itself on stderr
        loc = Localizer.load(path, threads=1)
    boxes, scores = [], []
    for i in range(0, len(pixels), _BATCH):
        box, score = loc.invoke(pixels[i : i + _BATCH])
        boxes.append(np.asarray(box, np.float64))
        scores.append(np.asarray(score, np.float64))
    return np.concatenate(boxes), np.concatenate(scores)


def verify_model(
    path: Path, holdout: Holdout, *, fmt: str, precision: str, max_iou_drop: float = 0.02
) -> Verification:
    """Run ``path`` on the held-out set and compare it with the Keras model."""
    box, score = run_exported(Path(path), holdout.pixels)
    keras_iou = float(holdout.iou(holdout.keras_box).mean())
    iou = holdout.iou(box)
    agree = np.argmax(score, axis=1) == np.argmax(holdout.keras_score, axis=1)
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
        max_iou_drop=float(max_iou_drop),
        n=len(holdout.pixels),
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


def keras_row(holdout: Holdout, size_bytes: int | None) -> dict[str, Any]:
    """The reference row of the table: the Keras float model itself."""
    iou = holdout.iou(holdout.keras_box)
    return {
        "format": "keras",
        "precision": "fp32",
        "size": size_bytes,
        "mean_iou": float(iou.mean()),
        "corloc": float((iou >= 0.5).mean()),
        "iou_drop": 0.0,
        "max_box_diff": 0.0,
        "score_agreement": 1.0,
        "status": "reference",
    }


def table(rows: list[dict[str, Any]], title: str = "Export verification") -> Any:
    """A rich table of verification rows (dicts from ``keras_row`` and ``row``)."""
    from rich.table import Table

    t = Table(title=title)
    for name in (
        "format",
        "precision",
        "size",
        "mean IoU",
        "CorLoc",
        "IoU drop",
        "max box diff",
        "score agree",
        "status",
    ):
        t.add_column(name, justify="left" if name in ("format", "precision", "status") else "right")
    for r in rows:

        def num(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            return "-" if r.get(key) is None else format(r[key], fmt)

        status = r.get("status", "")
        style = (
            "green" if status == "ok" else "red" if status.startswith(("FAILED", "error")) else ""
        )
        t.add_row(
            r["format"],
            r["precision"],
            human_size(r.get("size")),
            num("mean_iou", ".4f"),
            num("corloc", ".3f"),
            num("iou_drop", "+.4f"),
            num("max_box_diff", ".4f"),
            num("score_agreement", ".1%"),
            f"[{style}]{status}[/]" if style else status,
        )
    return t


def row(result: Any) -> dict[str, Any]:
    """A table row from an ExportResult (verified or not)."""
    v = result.verification
    base = {"format": result.format, "precision": result.precision, "size": result.size_bytes}
    if v is None:
        return {**base, "status": "ok (not verified)"}
    return {
        **base,
        "mean_iou": v.mean_iou,
        "corloc": v.corloc,
        "iou_drop": v.iou_drop,
        "max_box_diff": v.max_box_diff,
        "score_agreement": v.score_agreement,
        "status": v.status,
    }


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
