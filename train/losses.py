"""Box losses by name, masked to images that hold an object, plus the score loss.

The ``box`` target is (B, 5): the 4 box numbers in the model's box format followed by a
presence flag (1 = object, 0 = no-object negative). Box losses ignore negatives and
average over the positives of the batch; a batch with no positive gives 0.

Losses (``BOX_LOSSES``):
    mse        mean squared error on the 4 numbers (reference design 2)
    bce        binary cross-entropy on the 4 numbers (reference design 1)
    smooth_l1  Huber loss, quadratic below 0.05 (5 % of the image side)
    l1         mean absolute error
    giou       1 - generalized IoU, computed on x1, y1, x2, y2
    giou_l1    giou + 2.5 * l1, the default: IoU-driven, with L1 to pin the corners early
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from runtime.contract import to_xyxy

EPS = 1e-7
DEFAULT_LOSS = "giou_l1"
SMOOTH_L1_BETA = 0.05
GIOU_L1_WEIGHT = 2.5


def iou_xyxy(a: Any, b: Any, *, generalized: bool = False) -> Any:
    """IoU (or GIoU) of matching x1, y1, x2, y2 boxes (..., 4) in keras.ops; never NaN.

    Widths and heights are clipped at 0, so inverted or zero-width boxes have area 0
    and give IoU 0 instead of negative areas or a division by zero.
    """
    a_w = ops.maximum(a[..., 2] - a[..., 0], 0.0)
    a_h = ops.maximum(a[..., 3] - a[..., 1], 0.0)
    b_w = ops.maximum(b[..., 2] - b[..., 0], 0.0)
    b_h = ops.maximum(b[..., 3] - b[..., 1], 0.0)
    iw = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    union = a_w * a_h + b_w * b_h - inter
    iou = inter / ops.maximum(union, EPS)
    if not generalized:
        return iou
    # Smallest box enclosing both: penalizes distance even when the boxes do not overlap.
    cw = ops.maximum(a[..., 2], b[..., 2]) - ops.minimum(a[..., 0], b[..., 0])
    ch = ops.maximum(a[..., 3], b[..., 3]) - ops.minimum(a[..., 1], b[..., 1])
    enclose = ops.maximum(cw, 0.0) * ops.maximum(ch, 0.0)
    return iou - (enclose - union) / ops.maximum(enclose, EPS)


def _mse(t: Any, p: Any, fmt: str) -> Any:
    return ops.mean(ops.square(t - p), axis=-1)


def _l1(t: Any, p: Any, fmt: str) -> Any:
    return ops.mean(ops.abs(t - p), axis=-1)


def _bce(t: Any, p: Any, fmt: str) -> Any:
    p = ops.clip(p, EPS, 1.0 - EPS)
    return ops.mean(-(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p)), axis=-1)


def _smooth_l1(t: Any, p: Any, fmt: str) -> Any:
    d = ops.abs(t - p)
    beta = SMOOTH_L1_BETA
    return ops.mean(ops.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), axis=-1)


def _giou(t: Any, p: Any, fmt: str) -> Any:
    return 1.0 - iou_xyxy(to_xyxy(t, fmt, xp=ops), to_xyxy(p, fmt, xp=ops), generalized=True)


def _giou_l1(t: Any, p: Any, fmt: str) -> Any:
    return _giou(t, p, fmt) + GIOU_L1_WEIGHT * _l1(t, p, fmt)


BoxLossFn = Callable[[Any, Any, str], Any]  # (true (B, 4), pred (B, 4), box_format) -> (B,)
BOX_LOSSES: dict[str, BoxLossFn] = {
    "mse": _mse,
    "bce": _bce,
    "smooth_l1": _smooth_l1,
    "l1": _l1,
    "giou": _giou,
    "giou_l1": _giou_l1,
}


def check_loss(name: str) -> None:
    if name not in BOX_LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(BOX_LOSSES)}")


@keras.saving.register_keras_serializable(package="edgeloc")
class BoxLoss(keras.losses.Loss):
    """A named box loss on (B, 5) targets, averaged over the positives of the batch."""

    def __init__(self, kind: str = DEFAULT_LOSS, box_format: str = "xyxy", name: str | None = None,
                 **kwargs):
        check_loss(kind)
        super().__init__(name=name or f"box_{kind}", **kwargs)
        self.kind = kind
        self.box_format = box_format

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")  # (B, 5)
        y_pred = ops.cast(y_pred, "float32")  # (B, 4)
        present = y_true[:, 4]  # (B,) 1 = object
        per_sample = BOX_LOSSES[self.kind](y_true[:, :4], y_pred, self.box_format)  # (B,)
        # The base class averages over the batch; rescale so that average is the mean
        # over positives only (negatives contribute exactly 0).
        share = ops.maximum(ops.mean(present), EPS)
        return per_sample * present / share

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "box_format": self.box_format}


def box_loss(name: str, box_format: str = "xyxy") -> BoxLoss:
    """The box loss registered as ``name`` for boxes in ``box_format``."""
    return BoxLoss(name, box_format)


def score_loss() -> keras.losses.Loss:
    """Cross-entropy on the ``score`` softmax against the label index (0 = no object)."""
    return keras.losses.SparseCategoricalCrossentropy(name="score_ce")


__all__ = ["BOX_LOSSES", "DEFAULT_LOSS", "BoxLoss", "box_loss", "iou_xyxy", "score_loss"]
