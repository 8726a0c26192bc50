"""Drawing results on frames, box smoothing across frames and a frame-rate meter."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.localizer import Result

GREEN, GREY, WHITE = (60, 220, 60), (160, 160, 160), (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@lru_cache(maxsize=128)
def _text_patch(text: str, color: tuple, scale: float) -> tuple[np.ndarray, int]:
    """``text`` rendered once on its dark box: (patch, baseline offset of the text origin)."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.zeros((h + base + 4, w + 5, 3), np.uint8)  # the old filled cv2.rectangle
    cv2.putText(patch, text, (2, h + 3), _FONT, scale, color, 1, cv2.LINE_AA)
    return patch, h + 3


def _text(img: np.ndarray, text: str, org: tuple[int, int], color: tuple, scale: float) -> None:
    """Text on a dark box so it reads on any background (an outlined font costs 10x more).

    Rendered text is cached and copied in: a label or HUD line that repeats costs a
    memcpy instead of a font rasterization (~15 us each on a 640x480 frame).
    """
    patch, rise = _text_patch(text, color, scale)
    x0, y0 = org[0] - 2, org[1] - rise
    ph, pw = patch.shape[:2]
    ih, iw = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + pw, iw), min(y0 + ph, ih)
    if cx0 < cx1 and cy0 < cy1:
        img[cy0:cy1, cx0:cx1] = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


@lru_cache(maxsize=16)
def _style(height: int, width: int) -> tuple[float, int, int]:
    """Text scale, box line width and HUD baseline for a frame size (per frame: a lookup)."""
    scale = max(0.4, min(height, width) / 800)
    return scale, max(2, int(min(height, width) / 240)), int(22 * scale / 0.6)


def _frame(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, color: tuple, thick: int) -> None:
    """A box outline ``thick`` pixels wide, growing inwards, as nested 1-pixel rectangles:
    OpenCV's thick-line rasterizer costs ~5x more (7.5 vs 1.6 us per box)."""
    for i in range(thick):
        cv2.rectangle(img, (x1 + i, y1 + i), (x2 - i, y2 - i), color, 1)


def _check_canvas(img: np.ndarray) -> None:
    """Refuse an image OpenCV cannot draw on in place (else a deep cv2 traceback): gray,
    read-only, or a view whose pixels are not packed (``rgb[:, :, ::-1]``, ``img[:, ::2]``)."""
    if not (
        isinstance(img, np.ndarray)
        and img.ndim == 3
        and img.shape[2] == 3
        and img.flags.writeable
        and img.strides[2] == img.itemsize
        and img.strides[1] == 3 * img.itemsize
    ):
        shape = getattr(img, "shape", type(img).__name__)
        raise UserError(
            f"drawing needs a writable (h, w, 3) BGR image it can change in place, got {shape}"
            " (gray, read-only or a reversed/strided view); pass a copy, np.array(img), or "
            "cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) for gray"
        )


def draw_result(img: np.ndarray, result: Result, box: tuple | None = None) -> np.ndarray:
    """Draw the box and "label score" (or "no object") in place on a BGR image."""
    _check_canvas(img)
    scale, thick, _ = _style(*img.shape[:2])
    if not result.present:
        text = f"no object ({result.label} {result.score:.2f})"
        _text(img, text, (8, img.shape[0] - 10), GREY, scale)
        return img
    x1, y1, x2, y2 = box or result.box
    x1, y1, x2, y2 = round(x1), round(y1), round(x2), round(y2)
    _frame(img, x1, y1, x2, y2, GREEN, thick)
    _text(img, f"{result.label} {result.score:.2f}", (x1 + 2, max(y1 - 6, 14)), GREEN, scale)
    return img


def draw_hud(img: np.ndarray, fps: float, latency_ms: float) -> np.ndarray:
    """Draw frame rate and model latency in the top-left corner (pass ``HudValues`` output)."""
    _check_canvas(img)
    scale, _, baseline = _style(*img.shape[:2])
    _text(img, f"{fps:5.1f} FPS  {latency_ms:5.1f} ms", (8, baseline), WHITE, scale)
    return img


class HudValues:
    """FPS and latency as shown: refreshed ``rate`` times a second, so they can be read
    (numbers changing every frame are a blur) and their rendered text is reused."""

    def __init__(self, rate: float = 4.0, clock: Callable[[], float] = time.perf_counter):
        self.period, self._clock = 1.0 / rate, clock
        self._last = -float("inf")
        self.shown = (0.0, 0.0)

    def update(self, fps: float, latency_ms: float) -> tuple[float, float]:
        now = self._clock()
        if now - self._last >= self.period or not self.shown[0]:  # no rate yet: keep trying
            self._last, self.shown = now, (fps, latency_ms)
        return self.shown


class BoxSmoother:
    """Exponential moving average of the box: ``alpha`` 0 = off, towards 1 = smoother, slower."""

    def __init__(self, alpha: float = 0.0):
        if not 0.0 <= alpha < 1.0:
            raise UserError(f"smoothing must be in [0, 1), got {alpha}; try --smooth 0.5")
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
