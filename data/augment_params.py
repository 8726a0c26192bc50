"""Training augmentation as explicit per-sample parameters, so two engines apply the same one.

``data.augment.augment_example`` draws and applies in one pass (the reference, and the
python input pipeline). The TensorFlow input pipeline (``train.tf_augment``) instead
draws a parameter dict per sample in TF ops and applies it in TF ops; ``apply_params``
here applies the *same* dict with numpy and OpenCV, following the reference's order and
box arithmetic step by step. Tests feed one dict to both engines and check that the
boxes are identical and the pixels agree within interpolation rounding.

Parameters (``PARAMS``: name -> (shape, dtype)); each one's identity value turns its step off:
    rotation    (2, 3) float64  forward affine matrix about the image centre (cv2 layout);
                identity: no rotation (the reference rotates with BORDER_REFLECT_101)
    window      (4,) float64    x0, y0, x1, y1 in pixels of the (rotated) image; it may reach
                past the image (padding); the whole image: no crop
    fill        () float32      grey level of the padding, or -1: the image mirrored at its border
    flip        () bool         horizontal flip after the resize
    color       () bool         contrast/brightness (and maybe hue/saturation) jitter, with
    contrast    () float32        alpha: levels -> (v - mean) * alpha + mean + beta
    brightness  () float32        beta
    hsv         () bool           apply the levels to V of HSV and shift hue, scale saturation
    hue         () float32        hue shift in OpenCV units (of 180)
    saturation  () float32        saturation factor
    gamma       () float32      v -> 255 (v / 255) ** gamma (1: off)
    gains       (3,) float32    white balance times exposure (dim), one gain per channel (1: off)
    gray        () bool         three equal channels (RGB -> luma)
    kernel      (7, 7) float32  blur kernel, centred and zero-padded (a delta: off)
    noise       () float32      Gaussian noise sigma in grey levels (0: off), taken from the
    noise_at    (2,) int32        fixed noise table at this (y, x) offset
    jpeg        () int32        JPEG round trip at this quality (0: off)
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from data.augment import flip_horizontal, noise_table
from data.images import jpeg_roundtrip
from runtime.contract import preprocess

KERNEL = 7  # largest blur kernel side of the reference (motion blur 3, 5 or 7)
PARAMS: dict[str, tuple[tuple[int, ...], str]] = {
    "rotation": ((2, 3), "float64"),
    "window": ((4,), "float64"),
    "fill": ((), "float32"),
    "flip": ((), "bool"),
    "color": ((), "bool"),
    "contrast": ((), "float32"),
    "brightness": ((), "float32"),
    "hsv": ((), "bool"),
    "hue": ((), "float32"),
    "saturation": ((), "float32"),
    "gamma": ((), "float32"),
    "gains": ((3,), "float32"),
    "gray": ((), "bool"),
    "kernel": ((KERNEL, KERNEL), "float32"),
    "noise": ((), "float32"),
    "noise_at": ((2,), "int32"),
    "jpeg": ((), "int32"),
}
_LEVELS = np.arange(256, dtype=np.float32)


def identity_params(height: int, width: int) -> dict[str, np.ndarray]:
    """Parameters that change nothing: the plain contract resize of an (height, width) image."""
    kernel = np.zeros((KERNEL, KERNEL), np.float32)
    kernel[KERNEL // 2, KERNEL // 2] = 1.0
    values: dict[str, Any] = {
        "rotation": [[1, 0, 0], [0, 1, 0]], "window": [0, 0, width, height], "fill": 0,
        "flip": False, "color": False, "contrast": 1, "brightness": 0, "hsv": False, "hue": 0,
        "saturation": 1, "gamma": 1, "gains": [1, 1, 1], "gray": False, "kernel": kernel,
        "noise": 0, "noise_at": [0, 0], "jpeg": 0,
    }
    return {k: np.asarray(values[k], dtype).reshape(shape) for k, (shape, dtype) in PARAMS.items()}


def apply_params(image: np.ndarray, box: np.ndarray, present: bool, params: dict[str, Any],
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``params`` to an RGB image and its normalized x1, y1, x2, y2 box (numpy/OpenCV).

    Returns ((size, size, 3) uint8, (4,) float32 box); a negative's box is returned as given.
    """
    p = {k: np.asarray(v) for k, v in params.items()}
    box = np.asarray(box, np.float32)
    height, width = image.shape[:2]
    matrix = p["rotation"].astype(np.float64)
    if not np.array_equal(matrix, [[1, 0, 0], [0, 1, 0]]):
        image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        if present:
            box = rotate_box(box, matrix, height, width)
    x0, y0, x1, y1 = (int(v) for v in p["window"])
    if (x0, y0, x1, y1) != (0, 0, width, height):
        crop = image[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
        pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
        if any(pads):
            if float(p["fill"]) < 0:
                crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REFLECT_101)
            else:
                grey = int(p["fill"])
                crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_CONSTANT, value=(grey,) * 3)
        image = crop
        if present:
            box = window_box(box, p["window"], height, width)
    image = preprocess(image, size)  # (S, S, 3) uint8, the contract's resize
    if p["flip"]:
        image, box = flip_horizontal(image, box, present)
    return _photometric(image, p), box


def rotate_box(box: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """The enclosing rectangle of the rotated box, normalized and clipped (float32)."""
    x1, y1, x2, y2 = box * (width, height, width, height)
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]])  # (4, 3)
    moved = corners @ matrix.T  # (4, 2)
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    new = np.array([lo[0] / width, lo[1] / height, hi[0] / width, hi[1] / height])
    return np.clip(new, 0.0, 1.0).astype(np.float32)


def window_box(box: np.ndarray, window: np.ndarray, height: int, width: int) -> np.ndarray:
    """The box re-expressed in a window x0, y0, x1, y1 (pixels), clipped (float32)."""
    x0, y0, x1, y1 = (float(v) for v in window)
    pixels = np.asarray(box * (width, height, width, height), np.float64)
    new = (pixels - (x0, y0, x0, y0)) / (x1 - x0, y1 - y0, x1 - x0, y1 - y0)
    return np.clip(new, 0.0, 1.0).astype(np.float32)


def _photometric(image: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """The reference's photometric chain in its order, with the drawn values."""
    if p["color"]:
        mean = float(np.mean(cv2.mean(image)[:3]))  # pivot of the contrast change
        levels = np.clip((_LEVELS - mean) * p["contrast"] + mean + p["brightness"], 0, 255)
        if not p["hsv"]:
            image = cv2.LUT(image, levels.astype(np.uint8))
        else:
            table = np.stack([(_LEVELS + p["hue"]) % 180, np.clip(_LEVELS * p["saturation"], 0, 255),
                              levels], axis=-1)
            out = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), table.astype(np.uint8)[:, None, :])
            image = cv2.cvtColor(out, cv2.COLOR_HSV2RGB)
    if p["gamma"] != 1:
        table = np.clip(255.0 * (_LEVELS / 255.0) ** p["gamma"] + 0.5, 0, 255)
        image = cv2.LUT(image, table.astype(np.uint8))
    if np.any(p["gains"] != 1):
        tables = np.clip(_LEVELS[:, None] * p["gains"][None, :] + 0.5, 0, 255).astype(np.uint8)
        image = cv2.LUT(image, tables[:, None, :])  # (256, 1, 3): a table per channel
    if p["gray"]:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    kernel = p["kernel"].astype(np.float32)
    if kernel[KERNEL // 2, KERNEL // 2] != 1.0:
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if p["noise"] > 0:
        h, w = image.shape[:2]
        oy, ox = (int(v) for v in p["noise_at"])
        table = noise_table(max(512, h, w))
        image = np.clip(image + p["noise"] * table[oy:oy + h, ox:ox + w], 0, 255).astype(np.uint8)
    if p["jpeg"] > 0:
        image = jpeg_roundtrip(image, int(p["jpeg"]))
    return np.ascontiguousarray(image)


__all__ = ["KERNEL", "PARAMS", "apply_params", "identity_params", "rotate_box",
           "window_box"]
