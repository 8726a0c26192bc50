"""A PNG grid of test images with true (green) and predicted (red) boxes (matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.contract import box_iou, box_to_pixels, decode_score, to_xyxy

TRUE_COLOR, PRED_COLOR = "#22dd22", "#ff3333"


def save_prediction_grid(model: Any, samples: Sequence[Any], config: Any, path: str | Path,
                         *, columns: int = 4) -> Path:
    """Predict ``samples`` (data.sources.Sample) and draw them in a grid saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from train.evaluate import predict_samples

    m = config.model
    labels = list(m.labels)
    pred_box, pred_score = predict_samples(model, list(samples), m.image_size)
    pred_xyxy = to_xyxy(pred_box, m.box_format)  # (N, 4) normalized
    rows = max(1, math.ceil(len(samples) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sample, box, score in zip(axes.ravel(), samples, pred_xyxy, pred_score):
        h, w = sample.image.shape[:2]
        ax.imshow(sample.image)
        title = []
        if sample.label > 0:
            _draw(ax, Rectangle, box_to_pixels(sample.box, w, h), TRUE_COLOR)
            title.append(f"IoU {float(box_iou(sample.box, box)):.2f}")
        name, prob = decode_score(score, labels)
        present = 1.0 - float(score[0])
        _draw(ax, Rectangle, box_to_pixels(box, w, h), PRED_COLOR, dashed=present < 0.5)
        title.append(f"{name} {prob:.2f}")
        ax.set_title("  ".join(title), fontsize=9)
    fig.suptitle("green: true box, red: predicted (dashed: predicted 'no object')", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _draw(ax: Any, rect: Any, px: np.ndarray, color: str, dashed: bool = False) -> None:
    x1, y1, x2, y2 = (float(v) for v in px)
    ax.add_patch(rect((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2,
                      linestyle="--" if dashed else "-"))


__all__ = ["save_prediction_grid"]
