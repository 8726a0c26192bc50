"""Localization metrics: Keras metrics for training and numpy helpers for evaluation.

Definitions (the same in both forms):
    mean IoU     mean over images with an object of IoU(predicted box, true box), both
                 converted to x1, y1, x2, y2; zero-width or inverted boxes give IoU 0
    CorLoc@t     share of images with an object whose IoU >= t (t = 0.5 unless named)
    accuracy     share of all images whose argmax score is the true label (0 = none)
Images without an object (presence 0) are left out of IoU and CorLoc.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from runtime.contract import box_iou, to_xyxy
from train.losses import iou_xyxy


class _PositiveBoxMetric(keras.metrics.Metric):
    """Shared state: a running sum over images with an object, and their count."""

    def __init__(self, box_format: str = "xyxy", name: str = "iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.box_format = box_format
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _value(self, iou: Any) -> Any:
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")  # (B, 5): box + presence
        y_pred = ops.cast(y_pred, "float32")  # (B, 4)
        present = y_true[:, 4]
        iou = iou_xyxy(
            to_xyxy(y_true[:, :4], self.box_format, xp=ops),
            to_xyxy(y_pred, self.box_format, xp=ops),
        )  # (B,)
        self.total.assign_add(ops.sum(self._value(iou) * present))
        self.count.assign_add(ops.sum(present))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "box_format": self.box_format}


@keras.saving.register_keras_serializable(package="edgeloc")
class MeanBoxIoU(_PositiveBoxMetric):
    """Mean IoU between predicted and true boxes over images that hold an object."""

    def _value(self, iou):
        return iou


@keras.saving.register_keras_serializable(package="edgeloc")
class CorLoc(_PositiveBoxMetric):
    """CorLoc: share of images with an object whose predicted box has IoU >= threshold."""

    def __init__(self, threshold: float = 0.5, box_format: str = "xyxy", name: str | None = None,
                 **kwargs):
        name = name or ("corloc" if threshold == 0.5 else f"corloc{int(round(threshold * 100))}")
        super().__init__(box_format=box_format, name=name, **kwargs)
        self.threshold = threshold

    def _value(self, iou):
        return ops.cast(iou >= self.threshold, "float32")

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def box_metrics(box_format: str = "xyxy") -> list[keras.metrics.Metric]:
    """Metrics for the ``box`` output: mean IoU and CorLoc@0.5."""
    return [MeanBoxIoU(box_format, name="iou"), CorLoc(0.5, box_format)]


def score_metrics() -> list[keras.metrics.Metric]:
    """Metrics for the ``score`` output: class accuracy (no-object counts as a class)."""
    return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


def localization_report(
    true_box: np.ndarray,
    true_label: np.ndarray,
    pred_box: np.ndarray,
    pred_score: np.ndarray,
    labels: list[str] | tuple[str, ...],
    *,
    box_format: str = "xyxy",
    thresholds: tuple[float, ...] = (0.5, 0.75),
) -> dict[str, Any]:
    """Plain numpy evaluation of a localizer's outputs, e.g. from an exported model.

    Args:
        true_box: (N, 4) true boxes in ``box_format``, normalized.
        true_label: (N,) label indices, 0 = no object.
        pred_box: (N, 4) predicted boxes in ``box_format``.
        pred_score: (N, K) class probabilities (or (N,) predicted label indices).
        labels: class names, ``labels[0] == "none"``.
    Returns:
        ``mean_iou``, ``corloc@T`` per threshold, ``accuracy``, ``per_class_accuracy``
        (label -> accuracy, ``None`` for labels absent from the data), counts, and
        ``iou`` (the per-image IoU list for positives).
    """
    true_label = np.asarray(true_label).reshape(-1).astype(int)
    pred_score = np.asarray(pred_score)
    pred_label = pred_score.argmax(-1) if pred_score.ndim == 2 else pred_score.astype(int)
    iou = box_iou(to_xyxy(np.asarray(true_box, np.float64), box_format),
                  to_xyxy(np.asarray(pred_box, np.float64), box_format))  # (N,)
    pos = true_label > 0
    out: dict[str, Any] = {
        "images": int(true_label.size),
        "positives": int(pos.sum()),
        "mean_iou": float(iou[pos].mean()) if pos.any() else float("nan"),
    }
    for t in thresholds:
        out[corloc_key(t)] = float((iou[pos] >= t).mean()) if pos.any() else float("nan")
    correct = pred_label == true_label
    out["accuracy"] = float(correct.mean()) if correct.size else float("nan")
    out["per_class_accuracy"] = {
        name: (float(correct[true_label == k].mean()) if (true_label == k).any() else None)
        for k, name in enumerate(labels)
    }
    out["iou"] = [float(v) for v in iou[pos]]
    return out


def corloc_key(threshold: float) -> str:
    """Report key for CorLoc at ``threshold``: ``corloc@0.5``, ``corloc@0.75``."""
    return f"corloc@{threshold:g}"


__all__ = ["CorLoc", "MeanBoxIoU", "box_metrics", "corloc_key", "localization_report",
           "score_metrics"]
