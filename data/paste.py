"""Object-bank paste augmentation: the user's own labelled objects on new backgrounds.

The reference design's third step (one cat pasted on many photos) applied to a file
dataset. A share ``p`` of training samples is composed:

1. **object**: a training image's object, cut out by its box with a random margin of its
   own surroundings, under a soft mask (a feathered ellipse, a feathered rectangle, or
   Poisson blending: a mix, as Dwibedi et al. found best), so no rectangle border is left
   for the model to learn; optionally colour-jittered apart from the background;
2. **background**: a built-in scene (training backgrounds only, none showing people), or
   another training image with its own object cropped away (the largest object-free
   strip) or, when the object fills most of the photo, covered by a blended scene patch;
3. **placement**: the object's larger side is a log-uniform share of the canvas side
   (``scale``: small and large objects alike), its aspect jittered, its position free,
   and up to ``outside`` of it may leave the canvas (cut by the frame, as in real photos);
   the box follows the pasted object and is clipped to the canvas.

A share ``negatives`` of composed samples keeps the background alone (label 0), which
teaches the ``none`` class. Only the wrapped (training-split) source is ever read, so
validation and test images never leak into training. Sample ``i`` depends only on
(seed, i); an epoch holds ``size`` samples, the originals cycling among the composites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from data import assets
from data.sources import Sample, Source

BLENDS = ("ellipse", "feather", "poisson")


@dataclass(frozen=True)
class PasteOptions:
    """How composed samples are made.

    Attributes:
        p: share of training samples composed by pasting (0 turns it off).
        scale: range of the pasted object's larger side as a share of the canvas side,
            drawn log-uniformly (small objects are as likely as large ones per octave).
        aspect: largest log-change of the object's aspect ratio.
        margin: range of the surroundings cut out with the object, as a share of its box side.
        scenes: share of backgrounds that are built-in scenes (the rest: other training images).
        negatives: share of composed samples without an object.
        outside: largest share of the object's width or height that may leave the canvas.
        object_color: probability of a colour jitter on the object alone.
        object_strength: strength of that jitter (1.0: +-30% contrast, +-40 brightness,
            +-12 hue steps of 180).
        blends: weights of the blend modes ``ellipse``, ``feather``, ``poisson``.
        canvas: largest side of a composed image in pixels (the model sees 128-320 px;
            composing at full photo size only costs time).
        part: probability of pasting a random part of the object (each side 40-100% of
            the box) labelled as a whole object: only for objects that look alike in every
            part, such as one photo of fur standing in for whole animals (off for user data).
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.15, 1.0)
    aspect: float = 0.2
    margin: tuple[float, float] = (0.05, 0.25)
    scenes: float = 0.5
    negatives: float = 0.1
    outside: float = 0.3
    object_color: float = 0.5
    object_strength: float = 0.7
    blends: tuple[float, float, float] = (0.45, 0.45, 0.1)
    canvas: int = 320
    part: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p", "scenes", "negatives", "object_color", "outside", "part"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"paste {name} must be a share in [0, 1], got {value}")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.5:
            raise ValueError(f"paste scale must satisfy 0 < low <= high <= 1.5, got {self.scale}")
        if len(self.margin) != 2 or not 0.0 <= self.margin[0] <= self.margin[1] <= 2.0:
            raise ValueError(f"paste margin must satisfy 0 <= low <= high <= 2, got {self.margin}")
        if not 0.0 <= float(self.aspect) <= 1.0:  # a log-change: exp(1) = 2.7x
            raise ValueError(f"paste aspect must be in [0, 1], got {self.aspect}")
        if not 0.0 <= float(self.object_strength) <= 2.0:
            raise ValueError(f"paste object_strength must be in [0, 2], got {self.object_strength}")
        if not 32 <= float(self.canvas) <= 4096:  # also nan
            raise ValueError(f"paste canvas must be a side of 32-4096 pixels, got {self.canvas}")
        blends = [float(b) for b in self.blends]
        if len(blends) != len(BLENDS) or not all(0.0 <= b < float("inf") for b in blends) \
                or sum(blends) <= 0:
            raise ValueError(f"paste blends are {len(BLENDS)} finite weights >= 0 "
                             f"({', '.join(BLENDS)}), got {self.blends}")


@dataclass
class _Bank:
    """Which samples of the wrapped source hold an object (the object bank)."""

    objects: list[int] = field(default_factory=list)
    scenes: tuple[str, ...] = ()


class PasteSource:
    """A training source whose samples are, with probability ``p``, composed by pasting."""

    def __init__(self, base: Source, options: PasteOptions | None = None, *, seed: int | Sequence[int] = 0,
                 size: int | None = None, scenes: tuple[str, ...] | None = None,
                 canvases: Sequence[tuple[int, int]] | None = None):
        """``scenes``: background scene names (default: the training scenes without people);
        ``canvases``: (height, width) choices for composed images (default: the size of a
        random image of ``base``)."""
        self.base, self.options = base, options or PasteOptions()
        self.seed = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(v) for v in seed]
        self.labels = list(base.labels)
        self.canvases = list(canvases) if canvases else None
        self._size = max(len(base), int(size or 0))
        self._bank = _Bank(objects=[i for i in range(len(base)) if _label(base, i) > 0],
                           scenes=scenes or assets.backgrounds("train", faces=True))
        if not self._bank.objects:
            raise ValueError("paste augmentation needs training images with an object")

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < self._size:
            raise IndexError(f"sample {index} out of range for a paste source of {self._size}")
        rng = np.random.default_rng([*self.seed, 31_337, index])
        if rng.random() >= self.options.p:
            return self.base[index % len(self.base)]
        return self.compose(rng)

    # ------------------------------------------------------------------ composition
    def compose(self, rng: np.random.Generator) -> Sample:
        """One composed sample: a background, and (unless a negative) one pasted object."""
        o = self.options
        canvas, bg_name = self._background(rng)
        if rng.random() < o.negatives:
            return Sample(canvas, np.zeros(4, np.float32), 0, f"paste:none@{bg_name}")
        j = self._bank.objects[int(rng.integers(len(self._bank.objects)))]
        sample = self.base[j]
        if rng.random() < o.part:
            sample = _part(rng, sample)
        patch, inner = _cut(rng, sample, o.margin)  # patch (ph, pw, 3), object box in it
        if rng.random() < o.object_color:
            patch = assets.jitter_colors(rng, patch, strength=o.object_strength, hsv=0.8)
        height, width = canvas.shape[:2]
        x, y, w, h = _place(rng, inner, height, width, o)
        box = _paste(rng, canvas, patch, inner, (x, y, w, h), o.blends)
        norm = np.array([box[0] / width, box[1] / height, box[2] / width, box[3] / height], np.float32)
        return Sample(canvas, norm, int(sample.label), f"paste:{sample.name}@{bg_name}")

    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A writable (h, w, 3) background at the size of a random training image."""
        k = int(rng.integers(len(self.base)))
        if self.canvases:
            sample, (height, width) = None, self.canvases[int(rng.integers(len(self.canvases)))]
        else:
            sample = self.base[k]
            height, width = sample.image.shape[:2]
        scale = min(1.0, self.options.canvas / max(height, width))
        height, width = max(32, int(height * scale)), max(32, int(width * scale))
        if sample is None or rng.random() < self.options.scenes:
            image, name = assets.random_background(rng, self._bank.scenes, height, width)
            return np.ascontiguousarray(image), f"scene:{name}"
        return _without_object(rng, sample, self._bank.scenes, height, width), sample.name


def _label(source: Source, index: int) -> int:
    label = getattr(source, "label_of", None)  # FileSource knows labels without decoding
    return int(label(index)) if label is not None else int(source[index].label)


def _part(rng: np.random.Generator, sample: Sample) -> Sample:
    """The same sample with its box shrunk to a random part of the object."""
    x1, y1, x2, y2 = np.asarray(sample.box, np.float64)
    fw, fh = rng.uniform(0.4, 1.0, size=2)
    nx1 = x1 + rng.uniform(0, 1 - fw) * (x2 - x1)
    ny1 = y1 + rng.uniform(0, 1 - fh) * (y2 - y1)
    box = np.array([nx1, ny1, nx1 + fw * (x2 - x1), ny1 + fh * (y2 - y1)], np.float32)
    return Sample(sample.image, box, sample.label, sample.name)


def _cut(rng: np.random.Generator, sample: Sample, margin: tuple[float, float],
         ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The object with a random margin of surroundings: (patch, object box in the patch)."""
    image = sample.image
    height, width = image.shape[:2]
    x1, y1, x2, y2 = np.asarray(sample.box, np.float64) * (width, height, width, height)
    mx, my = rng.uniform(*margin) * (x2 - x1), rng.uniform(*margin) * (y2 - y1)
    px1, py1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    px2, py2 = int(min(width, np.ceil(x2 + mx))), int(min(height, np.ceil(y2 + my)))
    patch = np.ascontiguousarray(image[py1:py2, px1:px2])
    return patch, (x1 - px1, y1 - py1, x2 - px1, y2 - py1)


def _place(rng: np.random.Generator, inner: tuple[float, float, float, float], height: int,
           width: int, o: PasteOptions) -> tuple[float, float, float, float]:
    """Where the object box lands on the canvas: (x, y, w, h) pixels, possibly partly outside."""
    bw, bh = max(inner[2] - inner[0], 1.0), max(inner[3] - inner[1], 1.0)
    aspect = bw / bh * float(np.exp(rng.uniform(-o.aspect, o.aspect)))
    side = float(np.exp(rng.uniform(np.log(o.scale[0]), np.log(o.scale[1]))))  # larger side
    w, h = side * width, side * width / aspect
    if h / height > w / width:
        w, h = side * height * aspect, side * height
    w, h = max(4.0, w), max(4.0, h)
    ox, oy = o.outside * w, o.outside * h  # how far the box may leave the canvas
    x = rng.uniform(*sorted((-ox, width - w + ox)))  # an object larger than the canvas
    y = rng.uniform(*sorted((-oy, height - h + oy)))  # covers it, shifted at random
    return x, y, w, h


def _paste(rng: np.random.Generator, canvas: np.ndarray, patch: np.ndarray,
           inner: tuple[float, float, float, float], where: tuple[float, float, float, float],
           blends: tuple[float, float, float]) -> tuple[float, float, float, float]:
    """Blend ``patch`` into ``canvas`` (in place) so its object box lands on ``where``;
    return the object box in canvas pixels, clipped to the canvas."""
    height, width = canvas.shape[:2]
    x, y, w, h = where
    sx, sy = w / max(inner[2] - inner[0], 1.0), h / max(inner[3] - inner[1], 1.0)
    pw, ph = max(2, round(patch.shape[1] * sx)), max(2, round(patch.shape[0] * sy))
    patch = assets.resize(patch, pw, ph)
    px, py = round(x - inner[0] * sx), round(y - inner[1] * sy)  # patch origin on the canvas
    weights = np.asarray(blends, np.float64) / float(np.sum(blends))
    mode = BLENDS[int(rng.choice(len(BLENDS), p=weights))]
    inside = px >= 1 and py >= 1 and px + pw < width - 1 and py + ph < height - 1
    if mode == "poisson" and inside and min(pw, ph) >= 8:
        mask = (_ellipse_alpha(ph, pw, feather=False) * 255).astype(np.uint8)
        center = (px + pw // 2, py + ph // 2)
        canvas[:] = cv2.seamlessClone(patch, canvas, mask, center, cv2.NORMAL_CLONE)
    else:
        alpha = _ellipse_alpha(ph, pw) if mode == "ellipse" else _feather_alpha(ph, pw, inner, sx, sy)
        _blend(canvas, patch, px, py, alpha)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return x1, y1, x2, y2


def _ellipse_alpha(height: int, width: int, *, feather: bool = True) -> np.ndarray:
    """A (feathered) ellipse filling a (height, width) patch, float32 in [0, 1]."""
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, ((width / 2, height / 2), (width * 0.98, height * 0.98), 0.0), 1.0, -1)
    if not feather:
        return mask
    k = max(3, (min(height, width) // 10) | 1)
    return cv2.GaussianBlur(mask, (k, k), 0)


def _feather_alpha(height: int, width: int, inner: tuple[float, float, float, float],
                   sx: float, sy: float) -> np.ndarray:
    """1 over the object box, ramping to 0 across the margin: no hard rectangle edge."""
    x1, y1, x2, y2 = inner[0] * sx, inner[1] * sy, inner[2] * sx, inner[3] * sy
    xs, ys = np.arange(width, dtype=np.float32) + 0.5, np.arange(height, dtype=np.float32) + 0.5
    # Each side ramps over its margin (at least 2 px, so even a tight cut gets a soft edge).
    rx = np.minimum(np.clip(xs / max(x1, 2.0), 0, 1), np.clip((width - xs) / max(width - x2, 2.0), 0, 1))
    ry = np.minimum(np.clip(ys / max(y1, 2.0), 0, 1), np.clip((height - ys) / max(height - y2, 2.0), 0, 1))
    ramp = np.minimum(ry[:, None], rx[None, :])  # (h, w)
    return ramp * ramp * (3 - 2 * ramp)  # smoothstep


def _blend(image: np.ndarray, patch: np.ndarray, px: int, py: int, alpha: np.ndarray) -> None:
    """Alpha-blend ``patch`` with its top-left at (px, py), clipped to ``image``, in place."""
    height, width = image.shape[:2]
    x0, y0 = max(px, 0), max(py, 0)
    x1, y1 = min(px + patch.shape[1], width), min(py + patch.shape[0], height)
    if x1 <= x0 or y1 <= y0:
        return
    src = np.ascontiguousarray(patch[y0 - py : y1 - py, x0 - px : x1 - px])
    a = np.ascontiguousarray(alpha[y0 - py : y1 - py, x0 - px : x1 - px], dtype=np.float32)
    dst = np.ascontiguousarray(image[y0:y1, x0:x1])
    image[y0:y1, x0:x1] = cv2.blendLinear(src, dst, a, 1.0 - a)  # per-pixel weights, in C++


def _without_object(rng: np.random.Generator, sample: Sample, scenes: tuple[str, ...],
                    height: int, width: int) -> np.ndarray:
    """A training image with its object gone, resized to (height, width): the largest
    object-free strip when it is big enough, else the object covered by a scene patch."""
    image = sample.image
    ih, iw = image.shape[:2]
    if int(sample.label) == 0:
        return assets.resize(np.ascontiguousarray(image), width, height)
    x1, y1, x2, y2 = np.asarray(sample.box, np.float64) * (iw, ih, iw, ih)
    strips = [(0, 0, int(x1), ih), (int(np.ceil(x2)), 0, iw, ih),
              (0, 0, iw, int(y1)), (0, int(np.ceil(y2)), iw, ih)]  # left, right, top, bottom
    areas = [max(0, sx2 - sx1) * max(0, sy2 - sy1) for sx1, sy1, sx2, sy2 in strips]
    best = int(np.argmax(areas))
    sx1, sy1, sx2, sy2 = strips[best]
    if areas[best] >= 0.3 * ih * iw and min(sx2 - sx1, sy2 - sy1) >= 16:
        return assets.resize(np.ascontiguousarray(image[sy1:sy2, sx1:sx2]), width, height)
    out = assets.resize(np.ascontiguousarray(image), width, height)
    # Cover the object with a scene patch: opaque over the box and 5% around it, fading out
    # over the next 15%, so neither the object nor a hard patch edge is left.
    fx, fy = width / iw, height / ih
    bx1, by1, bx2, by2 = x1 * fx, y1 * fy, x2 * fx, y2 * fy
    bw, bh = bx2 - bx1, by2 - by1
    cx1, cy1 = int(max(0, bx1 - 0.2 * bw)), int(max(0, by1 - 0.2 * bh))
    cx2, cy2 = int(min(width, np.ceil(bx2 + 0.2 * bw))), int(min(height, np.ceil(by2 + 0.2 * bh)))
    if cx2 - cx1 >= 4 and cy2 - cy1 >= 4:
        cover, _ = assets.random_background(rng, scenes, cy2 - cy1, cx2 - cx1)
        core = (bx1 - 0.05 * bw - cx1, by1 - 0.05 * bh - cy1, bx2 + 0.05 * bw - cx1, by2 + 0.05 * bh - cy1)
        _blend(out, cover, cx1, cy1, _feather_alpha(cy2 - cy1, cx2 - cx1, core, 1.0, 1.0))
    return out


def paste_options(values: dict[str, Any] | None) -> PasteOptions:
    """``PasteOptions`` from a config dict (tuples may arrive as lists from JSON)."""
    values = dict(values or {})
    known = [f.name for f in fields(PasteOptions)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown paste option(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    for key in ("scale", "margin", "blends"):
        if key in values:
            if not isinstance(values[key], (list, tuple)):
                raise ValueError(f"paste {key} takes several numbers (LOW:HIGH), got {values[key]!r}")
            values[key] = tuple(values[key])
    return PasteOptions(**values)


__all__ = ["BLENDS", "PasteOptions", "PasteSource", "paste_options"]
