"""Drawing results on frames, box smoothing across frames and a frame-rate meter."""

from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np

from runtime.localizer import Result

GREEN, GREY, WHITE, BLACK = (60, 220, 60), (160, 160, 160), (255, 255, 255), (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], color: tuple, scale: float) -> None:
    """Text on a dark box so it reads on any background (an outlined font costs 10x more)."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), BLACK, -1)
    cv2.putText(img, text, org, _FONT, scale, color, 1, cv2.LINE_AA)


def draw_result(img: np.ndarray, result: Result, box: tuple | None = None) -> np.ndarray:
    """Draw the box and "label score" (or "no object") in place on a BGR image."""
    scale = max(0.4, min(img.shape[:2]) / 800)
    if not result.present:
        _text(
            img,
            f"no object ({result.label} {result.score:.2f})",
            (8, img.shape[0] - 10),
            GREY,
            scale,
        )
        return img
    x1, y1, x2, y2 = (int(round(v)) for v in (box or result.box))
    thick = max(2, int(min(img.shape[:2]) / 240))
    cv2.rectangle(img, (x1, y1), (x2, y2), GREEN, thick)
    _text(img, f"{result.label} {result.score:.2f}", (x1 + 2, max(y1 - 6, 14)), GREEN, scale)
    return img


def draw_hud(img: np.ndarray, fps: float, latency_ms: float) -> np.ndarray:
    """Draw frame rate and model latency in the top-left corner."""
    scale = max(0.4, min(img.shape[:2]) / 800)
    _text(img, f"{fps:5.1f} FPS  {latency_ms:5.1f} ms", (8, int(22 * scale / 0.6)), WHITE, scale)
    return img


class BoxSmoother:
    """Exponential moving average of the box: ``alpha`` 0 = off, towards 1 = smoother, slower."""

    def __init__(self, alpha: float = 0.0):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {alpha}; try --smooth 0.5")
        self.alpha = alpha
        self._box: np.ndarray | None = None

    def update(self, result: Result) -> tuple[float, float, float, float]:
        """Smoothed pixel box for this frame; resets when the object disappears."""
        box = np.asarray(result.box)
        if not result.present or self.alpha == 0.0:
            self._box = None if not result.present else box
            return result.box
        self._box = box if self._box is None else self.alpha * self._box + (1 - self.alpha) * box
        return tuple(float(v) for v in self._box)


class FpsMeter:
    """Frames per second over the last ``window`` frames (no spikes from single short gaps)."""

    def __init__(self, window: int = 30):
        self._times: deque[float] = deque(maxlen=window)
        self.fps = 0.0

    def tick(self) -> float:
        self._times.append(time.perf_counter())
        if len(self._times) > 1 and self._times[-1] > self._times[0]:
            self.fps = (len(self._times) - 1) / (self._times[-1] - self._times[0])
        return self.fps
