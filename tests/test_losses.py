"""Box losses, IoU/GIoU in keras.ops, and the localization metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.contract import from_xyxy
from train.losses import BOX_LOSSES, box_loss, iou_xyxy
from train.metrics import CorLoc, MeanBoxIoU, localization_report

TRUE = np.array([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]], np.float32)  # xyxy


def target(boxes: np.ndarray, present: list[float], fmt: str = "xyxy") -> np.ndarray:
    """(B, 5) target: boxes converted to fmt + presence flag."""
    return np.concatenate([from_xyxy(boxes, fmt), np.array(present, np.float32)[:, None]], 1)


def value(loss, y_true, y_pred) -> float:
    return float(np.asarray(loss(y_true.astype(np.float32), y_pred.astype(np.float32))))


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
@pytest.mark.parametrize("fmt", ["xyxy", "xywh"])
def test_perfect_box_is_minimal_and_wrong_box_costs_more(name, fmt):
    loss = box_loss(name, fmt)
    y = target(TRUE, [1, 1], fmt)
    perfect = value(loss, y, from_xyxy(TRUE, fmt))
    shifted = value(loss, y, from_xyxy(TRUE + np.array([0.08, 0, 0.08, 0], np.float32), fmt))
    if name == "bce":  # cross-entropy bottoms out at the targets' own entropy, not 0
        assert shifted > perfect + 1e-3
    else:
        assert perfect == pytest.approx(0.0, abs=1e-5)
        assert shifted > 1e-3


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
def test_negatives_are_masked(name):
    loss = box_loss(name)
    wrong = np.array([[0.0, 0.0, 0.05, 0.05]], np.float32)
    pos_only = value(loss, target(TRUE[:1], [1]), TRUE[:1] + 0.05)
    # Same positive plus a negative whose predicted box is far off: same loss.
    mixed = value(loss, target(np.concatenate([TRUE[:1], TRUE[1:]]), [1, 0]),
                  np.concatenate([TRUE[:1] + 0.05, wrong]))
    assert mixed == pytest.approx(pos_only, rel=1e-5)
    assert value(loss, target(TRUE, [0, 0]), np.zeros((2, 4))) == 0.0


def test_iou_and_giou_hand_computed():
    a = np.array([[0.0, 0.0, 0.5, 0.5]], np.float32)
    b = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)  # inter 1/16, union 7/16
    assert float(iou_xyxy(a, b)[0]) == pytest.approx(1 / 7, rel=1e-5)
    # Enclosing box 0.75 x 0.75 = 9/16: GIoU = 1/7 - (9/16 - 7/16) / (9/16)
    assert float(iou_xyxy(a, b, generalized=True)[0]) == pytest.approx(1 / 7 - 2 / 9, rel=1e-5)
    far = np.array([[0.6, 0.6, 0.7, 0.7]], np.float32)
    assert float(iou_xyxy(a, far)[0]) == 0.0
    assert float(iou_xyxy(a, far, generalized=True)[0]) < 0.0


def test_iou_guards_zero_width_and_inverted_boxes():
    a = np.array([[0.2, 0.2, 0.2, 0.6], [0.5, 0.5, 0.1, 0.1], [0.3, 0.3, 0.3, 0.3]], np.float32)
    b = np.array([[0.1, 0.1, 0.4, 0.4], [0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.3, 0.3]], np.float32)
    iou = np.asarray(iou_xyxy(a, b))
    giou = np.asarray(iou_xyxy(a, b, generalized=True))
    assert np.all(np.isfinite(iou)) and np.all(np.isfinite(giou))
    np.testing.assert_allclose(iou, 0.0)
    assert np.all(np.isfinite(np.asarray(box_loss("giou")(target(a, [1, 1, 1]), b))))


def test_keras_metrics_match_hand_computed_values():
    y_true = target(np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 1], [0, 0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]],
                             np.float32), [1, 1, 1, 0])
    y_pred = np.array([[0, 0, 0.5, 0.5],      # IoU 1
                       [0, 0, 1, 0.6],        # IoU 0.6
                       [0.5, 0.5, 0.5, 0.9],  # zero width: IoU 0
                       [0.9, 0.9, 1, 1]], np.float32)  # negative: ignored
    iou, c50, c75 = MeanBoxIoU(), CorLoc(0.5), CorLoc(0.75)
    for m in (iou, c50, c75):
        m.update_state(y_true, y_pred)
    assert float(iou.result()) == pytest.approx(1.6 / 3, rel=1e-5)
    assert float(c50.result()) == pytest.approx(2 / 3, rel=1e-5)
    assert float(c75.result()) == pytest.approx(1 / 3, rel=1e-5)
    assert c75.name == "corloc75" and c50.name == "corloc"


def test_keras_metric_converts_xywh():
    m = MeanBoxIoU("xywh")
    y_true = target(np.array([[0.2, 0.2, 0.6, 0.6]], np.float32), [1], "xywh")
    m.update_state(y_true, np.array([[0.2, 0.2, 0.4, 0.2]], np.float32))  # top half
    assert float(m.result()) == pytest.approx(0.5, rel=1e-5)


def test_localization_report_hand_computed():
    true_box = np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 1], [0, 0, 0, 0], [0.2, 0.2, 0.4, 0.4]])
    pred_box = np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 0.7], [0.3, 0.3, 0.6, 0.6], [0.3, 0.3, 0.3, 0.5]])
    true_label = np.array([1, 2, 0, 1])
    score = np.array([[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    r = localization_report(true_box, true_label, pred_box, score, ["none", "cat", "dog"])
    assert r["positives"] == 3
    assert r["mean_iou"] == pytest.approx((1 + 0.7 + 0) / 3)
    assert r["corloc@0.5"] == pytest.approx(2 / 3) and r["corloc@0.75"] == pytest.approx(1 / 3)
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["per_class_accuracy"] == {"none": 0.0, "cat": 0.5, "dog": 1.0}
