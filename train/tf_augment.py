"""The reference augmentations in TensorFlow ops, for the ``tf`` input pipeline: parameters
drawn and applied with no Python per element (no GIL).

The parameter dict is ``data.augment_params.PARAMS``; ``data.augment_params.apply_params``
applies the same dict with OpenCV, step by step as ``data.augment`` does, and tests check
that both engines agree (boxes bit for bit: float64 in numpy's order). Distributions,
probabilities and order are those of ``data.augment``. Work is split where it is cheapest:

    per batch   ``draw_geometry``, ``move_boxes``, ``draw_photometric`` (vectorized draws
                and box arithmetic), then ``finish``: flip and photometric chain on
                (B, S, S, 3), each step applied to the samples that drew it (its ops
                are ``train._tf_photometric``)
    per sample  ``geometry``: the pixels only (rotation, the window cut out and padded,
                the contract's resize to S x S)

Per-op overhead, not arithmetic, is what a tf.data map pays on small images: drawing and
moving boxes per sample (~150 scalar ops) cost ~0.35 ms an image on one core, per batch a
few microseconds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import cv2
import numpy as np
import tensorflow as tf

from data.augment import DIM_GAINS, Augment
from data.augment_params import KERNEL, PARAMS
from train._tf_photometric import finish

# Augment fields this module implements; any other field that is switched on (a later
# addition to data.augment) makes the tf pipeline refuse the profile (see ``unsupported``).
SUPPORTED = ("crop", "scale", "aspect", "outside", "fill", "flip", "rotate", "rotate_deg", "color",
             "color_strength", "gamma", "white_balance", "wb_strength", "dim", "grayscale", "blur",
             "noise", "jpeg")
GEOMETRY = ("rotation", "window", "fill")  # drawn per sample; the other PARAMS per batch
_F64 = tf.float64


def unsupported(aug: Augment | None) -> list[str]:
    """Fields of ``aug`` switched on that this module does not implement (empty: all fine)."""
    if aug is None:
        return []
    return [f.name for f in dataclasses.fields(aug)
            if f.name not in SUPPORTED and getattr(aug, f.name) not in (None, 0, 0.0, False, ())]


class _Uniform:
    """Columns of one (B, 32) uniform float64 matrix: one random op per sample or batch."""

    def __init__(self, seed: Any, batch: Any, columns: int = 32):
        self.r = tf.random.stateless_uniform(tf.stack([batch, columns]), tf.cast(seed, tf.int64),
                                             dtype=_F64)
        self.taken, self.columns = 0, columns

    def __call__(self, lo: float = 0.0, hi: float = 1.0, k: int | None = None) -> tf.Tensor:
        """(B,) draws in [lo, hi), or (B, k) with ``k``."""
        n = k or 1
        assert self.taken + n <= self.columns, "raise _Uniform's column count"
        r = self.r[:, self.taken:self.taken + n]
        self.taken += n
        return lo + (hi - lo) * (r if k else r[:, 0])


# ------------------------------------------------------------------------------------ draw
def draw_geometry(seed: Any, aug: Augment, heights: Any, widths: Any, boxes: Any,
                  present: Any) -> dict[str, tf.Tensor]:
    """A batch's rotation, window and fill, (B, ...) each (``data.augment.rotate`` and
    ``random_window``); ``boxes`` (B, 4) normalized xyxy, ``present`` (B,) bool."""
    u = _Uniform(seed, tf.shape(present)[0])
    h, w = tf.cast(heights, _F64), tf.cast(widths, _F64)  # (B,)
    boxes = tf.cast(boxes, _F64)
    angle = u(-aug.rotate_deg, aug.rotate_deg)
    do_rotate = u() < aug.rotate
    rotation = tf.where(do_rotate[:, None, None], _rotation_matrices(angle, h, w), tf.eye(2, 3, dtype=_F64))
    rotated = tf.where((present & do_rotate)[:, None], rotate_boxes(boxes, rotation, h, w), boxes)
    sx = u(*aug.scale)
    sy = sx * tf.exp(u(-aug.aspect, aug.aspect))
    pixels = rotated * tf.stack([w, h, w, h], 1)
    lo = tf.where(present[:, None], pixels[:, :2], tf.stack([w, h], 1))  # nothing to keep: any window
    hi = tf.where(present[:, None], pixels[:, 2:], tf.zeros_like(pixels[:, 2:]))
    x0, x1 = _axis_window(u(), w, lo[:, 0], hi[:, 0], sx * w, aug.outside)
    y0, y1 = _axis_window(u(), h, lo[:, 1], hi[:, 1], sy * h, aug.outside)
    full = tf.stack([tf.zeros_like(w), tf.zeros_like(h), w, h], 1)
    window = tf.where((u() < aug.crop)[:, None], tf.stack([x0, y0, x1, y1], 1), full)
    # Padding: a grey level, or (random fill, half the time) the image mirrored at its edge.
    crop_h, crop_w = tf.minimum(y1, h) - tf.maximum(y0, 0.0), tf.minimum(x1, w) - tf.maximum(x0, 0.0)
    pads = tf.stack([-y0, y1 - h, -x0, x1 - w], 1)
    mirror_ok = tf.reduce_all(pads < tf.stack([crop_h, crop_h, crop_w, crop_w], 1), 1)
    mirror, grey = u() < 0.5, tf.floor(u(0.0, 256.0))
    fill = (tf.where(mirror_ok & mirror, tf.constant(-1.0, _F64), grey) if aug.fill is None
            else tf.fill(tf.shape(grey), tf.constant(float(aug.fill), _F64)))
    return {"rotation": rotation, "window": window, "fill": tf.cast(fill, tf.float32)}


def draw_photometric(seed: Any, aug: Augment, batch: Any, size: int) -> dict[str, tf.Tensor]:
    """A batch's flip and photometric parameters, (B, ...) each (``data.augment.photometric``)."""
    u = _Uniform(seed, batch)
    s = aug.color_strength
    p: dict[str, Any] = {"flip": u() < aug.flip, "color": u() < aug.color}
    # data.assets.jitter_colors: contrast, brightness, and 60% of the time hue and saturation.
    p["contrast"], p["brightness"] = 1.0 + s * u(-0.3, 0.3), s * u(-40.0, 40.0)
    p["hsv"], p["hue"] = u() < 0.6, tf.round(s * u(-12.0, 12.0))
    p["saturation"] = 1.0 + s * u(-0.35, 0.35)
    p["gamma"] = tf.where(u() < aug.gamma, tf.exp(u(math.log(0.6), math.log(1.6))), 1.0)
    gains = 1.0 + u(-aug.wb_strength, aug.wb_strength, 3)
    p["gains"] = tf.where((u() < aug.white_balance)[:, None], gains, 1.0)
    p["gray"] = u() < aug.grayscale
    p["kernel"] = _blur_kernels(u() < aug.blur, u(), u(), u(), u(0.0, 180.0))
    p["noise"] = tf.where(u() < aug.noise, u(2.0, 10.0), 0.0)
    p["noise_at"] = tf.floor(u(0.0, max(512, size) - size + 1.0, 2))
    p["jpeg"] = tf.where(u() < aug.jpeg, tf.floor(u(25.0, 91.0)), 0.0)
    # Exposure (dim) multiplies the white-balance gains, as in the reference; drawn last so
    # that the columns above do not move when it was added.
    low, high = (math.log(g) for g in DIM_GAINS)
    exposure = tf.where(u() < aug.dim, tf.exp(u(low, high)), 1.0)
    p["gains"] = p["gains"] * exposure[:, None]
    return {k: tf.cast(p[k], PARAMS[k][1]) for k in PARAMS if k not in GEOMETRY}


def draw_params(seed: Any, aug: Augment, height: Any, width: Any, box: Any, present: Any,
                size: int) -> dict[str, tf.Tensor]:
    """One sample's whole parameter dict (``data.augment_params.PARAMS``)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    one = lambda t: tf.reshape(t, [1, *t.shape])  # noqa: E731
    params = draw_geometry(seeds[0], aug, one(tf.convert_to_tensor(height)), one(tf.convert_to_tensor(width)),
                           one(tf.convert_to_tensor(box)), one(tf.convert_to_tensor(present)))
    params.update(draw_photometric(seeds[1], aug, 1, size))
    return {k: tf.ensure_shape(params[k][0], shape) for k, (shape, _) in PARAMS.items()}


def _rotation_matrices(angle: tf.Tensor, h: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0) per sample: (B, 2, 3) float64."""
    rad = angle * (math.pi / 180.0)
    a, b = tf.cos(rad), tf.sin(rad)
    cx, cy = w / 2, h / 2
    return tf.stack([tf.stack([a, b, (1 - a) * cx - b * cy], 1),
                     tf.stack([-b, a, b * cx + (1 - a) * cy], 1)], 1)


def _axis_window(r: tf.Tensor, length: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, size: tf.Tensor,
                 outside: float) -> tuple[tf.Tensor, tf.Tensor]:
    """data.augment._axis_window with the uniform draw ``r`` given: (start, stop) pixels."""
    out = outside * length
    size = tf.minimum(tf.maximum(size, hi - lo), length + 2 * out)
    start_min = tf.maximum(-out, hi - size)
    start_max = tf.minimum(length + out - size, lo)
    start = tf.floor(start_min + r * (tf.maximum(start_min, start_max) - start_min))
    stop = start + tf.maximum(tf.math.ceil(size), 1.0)
    return tf.minimum(start, tf.floor(lo)), tf.maximum(stop, tf.math.ceil(hi))


def _centred(kernel: np.ndarray) -> np.ndarray:
    out = np.zeros((KERNEL, KERNEL), np.float64)
    o = (KERNEL - kernel.shape[0]) // 2
    out[o:o + kernel.shape[0], o:o + kernel.shape[1]] = kernel
    return out


def _blur_kernels(do: tf.Tensor, kind: tf.Tensor, small: tf.Tensor, pick: tf.Tensor,
                  angle: tf.Tensor) -> tf.Tensor:
    """(B, 7, 7) kernels of the reference's blur: Gaussian 3 or 5 (70%), or a motion line of
    3, 5 or 7 pixels at a random angle (30%); a centred delta where ``do`` is False."""
    gauss = [_centred(g @ g.T) for g in (cv2.getGaussianKernel(k, 0) for k in (3, 5))]
    gauss = tf.where((small < 0.7)[:, None, None], gauss[0], gauss[1])  # GaussianBlur(k, 0)
    k = tf.gather(tf.constant([3.0, 5.0, 7.0], _F64), tf.cast(tf.floor(pick * 3), tf.int32))  # (B,)
    c = KERNEL // 2
    cols = tf.abs(tf.range(KERNEL, dtype=_F64) - c)[None, :] <= ((k - 1) / 2)[:, None]  # (B, 7)
    row = tf.equal(tf.range(KERNEL), c)[None, :, None]
    line = tf.where(row & cols[:, None, :], (1.0 / k)[:, None, None], 0.0)  # (B, 7, 7)
    # cv2.warpAffine of the k x k line about its centre (the zero ring around it changes
    # nothing); the warp maps output -> input: the inverse turn.
    rad = -angle * (math.pi / 180.0)
    a, b, zero = tf.cos(rad), tf.sin(rad), tf.zeros_like(rad)
    inverse = tf.stack([a, b, (1 - a) * c - b * c, -b, a, b * c + (1 - a) * c, zero, zero], 1)
    motion = tf.cast(_warp(line[..., None], inverse, (KERNEL, KERNEL), "CONSTANT", 0.0)[..., 0], _F64)
    motion /= tf.maximum(tf.reduce_sum(motion, [1, 2], keepdims=True), 1e-6)
    kernel = tf.where((kind < 0.7)[:, None, None], gauss, motion)
    return tf.cast(tf.where(do[:, None, None], kernel, _centred(np.ones((1, 1)))), tf.float32)


# -------------------------------------------------------------------------------- geometry
def rotate_boxes(boxes: tf.Tensor, matrices: tf.Tensor, h: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """The enclosing rectangles of the rotated boxes (B, 4), normalized, clipped and rounded
    to float32 as numpy returns them (held in float64 for the next step)."""
    x1, y1, x2, y2 = tf.unstack(tf.cast(boxes, _F64) * tf.stack([w, h, w, h], 1), axis=1)
    one = tf.ones_like(x1)
    corners = tf.stack([tf.stack([x1, y1, one], 1), tf.stack([x2, y1, one], 1),
                        tf.stack([x1, y2, one], 1), tf.stack([x2, y2, one], 1)], 1)  # (B, 4, 3)
    moved = tf.matmul(corners, matrices, transpose_b=True)  # (B, 4, 2)
    lo, hi = tf.reduce_min(moved, 1), tf.reduce_max(moved, 1)
    new = tf.clip_by_value(tf.stack([lo[:, 0] / w, lo[:, 1] / h, hi[:, 0] / w, hi[:, 1] / h], 1), 0.0, 1.0)
    return tf.cast(tf.cast(new, tf.float32), _F64)


def move_boxes(boxes: tf.Tensor, present: tf.Tensor, heights: tf.Tensor, widths: tf.Tensor,
               p: dict[str, tf.Tensor]) -> tf.Tensor:
    """Boxes (B, 4) through the rotation and the window (``data.augment_params`` arithmetic,
    float64 in numpy's order): the geometry's box, no pixel touched."""
    h, w = tf.cast(heights, _F64), tf.cast(widths, _F64)
    boxes = tf.cast(boxes, _F64)
    rotate = tf.reduce_any(tf.not_equal(p["rotation"], tf.eye(2, 3, dtype=_F64)), [1, 2])
    boxes = tf.where((present & rotate)[:, None], rotate_boxes(boxes, p["rotation"], h, w), boxes)
    x0, y0, x1, y1 = tf.unstack(p["window"], axis=1)
    window = (x0 != 0) | (y0 != 0) | (x1 != w) | (y1 != h)
    pixels = boxes * tf.stack([w, h, w, h], 1)
    moved = (pixels - tf.stack([x0, y0, x0, y0], 1)) / tf.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], 1)
    boxes = tf.where((present & window)[:, None], tf.clip_by_value(moved, 0.0, 1.0), boxes)
    return tf.cast(boxes, tf.float32)


def _warp(images: tf.Tensor, transforms: tf.Tensor, shape: tuple[Any, Any], mode: str,
          fill: Any) -> tf.Tensor:
    """Bilinear projective warp of (B, h, w, C); ``transforms`` (B, 8) or (8,) map output
    pixels to input pixels."""
    transforms = tf.cast(transforms, tf.float32)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms if transforms.shape.rank == 2 else transforms[None],
        output_shape=tf.cast(tf.stack(shape), tf.int32), fill_value=tf.cast(fill, tf.float32),
        interpolation="BILINEAR", fill_mode=mode)


def geometry(image: tf.Tensor, p: dict[str, tf.Tensor], size: int) -> tf.Tensor:
    """One image's pixels through rotation, window and the contract's resize: (S, S, 3) uint8.
    ``p`` holds this sample's ``rotation`` (2, 3), ``window`` (4,) and ``fill`` ()."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], _F64), tf.cast(shape[1], _F64)
    matrix = p["rotation"]

    def turn() -> tf.Tensor:
        # cv2.warpAffine inverts the forward matrix; the warp wants output -> input as well.
        inverse = tf.linalg.inv(tf.concat([matrix, [[0.0, 0.0, 1.0]]], 0))[:2]  # (2, 3)
        # BORDER_REFLECT_101: pad by mirroring as far as the turned corners reach, then warp
        # the padded image.
        corners = tf.stack([[0.0, 0.0, 1.0], [w - 1, 0.0, 1.0], [0.0, h - 1, 1.0], [w - 1, h - 1, 1.0]])
        src = tf.matmul(corners, inverse, transpose_b=True)  # (4, 2) input x, y
        lo, hi = tf.reduce_min(src, 0), tf.reduce_max(src, 0)
        limit = tf.stack([w - 1, h - 1])
        before = tf.cast(tf.clip_by_value(tf.math.ceil(-lo) + 1, 0.0, limit), tf.int32)
        after = tf.cast(tf.clip_by_value(tf.math.ceil(hi - limit) + 1, 0.0, limit), tf.int32)
        padded = _mirror(image, before[1], after[1], before[0], after[0])
        shift = tf.cast(tf.stack([[0, 0, before[0]], [0, 0, before[1]]]), _F64)
        flat = tf.concat([tf.reshape(inverse + shift, [-1]), tf.zeros(2, _F64)], 0)
        out = _warp(padded[None], flat, (shape[0], shape[1]), "NEAREST", 0.0)[0]
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    x = tf.cond(tf.reduce_any(tf.not_equal(matrix, tf.eye(2, 3, dtype=_F64))), turn, lambda: image)
    x0, y0, x1, y1 = tf.unstack(p["window"])
    window = (x0 != 0) | (y0 != 0) | (x1 != w) | (y1 != h)
    x = tf.cond(window, lambda: _cut(x, p["window"], p["fill"], h, w), lambda: x)
    # tf.image.resize: half-pixel centres, clamped at the border, as cv2's INTER_LINEAR
    # (which rounds in fixed point: pixels differ by at most one grey level).
    x = tf.image.resize(x[None], (size, size), method="bilinear")[0]
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)  # (S, S, 3)


def _cut(x: tf.Tensor, window: tf.Tensor, fill: tf.Tensor, h: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """The window x0, y0, x1, y1 of an (h, w, 3) image, padded where it reaches past it."""
    x0, y0, x1, y1 = tf.unstack(tf.cast(window, tf.int32))
    hi, wi = tf.cast(h, tf.int32), tf.cast(w, tf.int32)
    crop = x[tf.maximum(y0, 0):tf.minimum(y1, hi), tf.maximum(x0, 0):tf.minimum(x1, wi)]
    pads = [[tf.maximum(0, -y0), tf.maximum(0, y1 - hi)], [tf.maximum(0, -x0), tf.maximum(0, x1 - wi)],
            [0, 0]]
    grey = tf.cast(tf.maximum(fill, 0.0), x.dtype)
    return tf.cond(fill < 0, lambda: _mirror(crop, *pads[0], *pads[1]),
                   lambda: tf.pad(crop, pads, constant_values=grey))


def _mirror(x: tf.Tensor, top: Any, bottom: Any, left: Any, right: Any) -> tf.Tensor:
    """Pad (h, w, C) by mirroring without repeating the edge (BORDER_REFLECT_101, each pad
    under the side): slices and concats, 4x faster here than tf.pad's MirrorPad kernel
    (measured 30 vs 530 us for a 180x270 crop)."""
    x = tf.concat([tf.reverse(x[1:top + 1], [0]), x, tf.reverse(x[-bottom - 1:-1], [0])], 0)
    return tf.concat([tf.reverse(x[:, 1:left + 1], [1]), x, tf.reverse(x[:, -right - 1:-1], [1])], 1)


# ------------------------------------------------------------------------------ one sample
def apply_params(image: tf.Tensor, box: tf.Tensor, present: tf.Tensor, p: dict[str, tf.Tensor],
                 size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """One sample: TF twin of ``data.augment_params.apply_params`` ((S, S, 3) uint8, (4,) box)."""
    shape = tf.shape(image)
    batch = {k: tf.convert_to_tensor(v)[None] for k, v in p.items()}
    present = tf.reshape(present, [1])
    box = move_boxes(tf.reshape(box, [1, 4]), present, shape[:1], shape[1:2], batch)
    x = geometry(image, p, size)
    x, boxes = finish(x[None], box, present, batch, size)
    return x[0], boxes[0]


__all__ = ["GEOMETRY", "SUPPORTED", "apply_params", "draw_geometry", "draw_params",
           "draw_photometric", "finish", "geometry", "move_boxes", "rotate_boxes", "unsupported"]
