"""Synthetic sources generated on the fly from built-in assets (the reference design's three
steps plus selfie-like faces).

Sample ``i`` is a pure function of (seed, split, i): three independent random streams
draw the background, the object and whether the sample is a negative, so a test can
regenerate the background of any sample (``source.background(i)``) and compare.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import cv2
import numpy as np

from data import assets
from data.sources import Sample, SourceOptions

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# Canvas (height, width): square, 4:3 landscape, 3:4 portrait, 16:9 webcam. The contract
# stretches every image to the model size, so training sees the same stretch as the runtime.
CANVASES = ((256, 256), (240, 320), (320, 240), (216, 384))
SCALE_RANGE = (0.2, 0.9)  # object side as a share of the image side


class SyntheticSource:
    """Base class: ``size`` samples, a share ``negatives`` of them without an object."""

    kind = "synthetic"
    labels = ["none", "object"]
    canvases: tuple[tuple[int, int], ...] = ((256, 256),)

    def __init__(self, options: SourceOptions) -> None:
        if options.split not in _SPLIT_IDS:
            raise ValueError(f"unknown split {options.split!r}; valid: {', '.join(_SPLIT_IDS)}")
        if int(options.size) < 1:
            raise ValueError(f"size must be at least 1, got {options.size}")
        if not 0.0 <= float(options.negatives) < 1.0:
            raise ValueError(f"negatives must be a share in [0, 1), got {options.negatives}")
        self.options = options
        self.split = options.split
        self.size = int(options.size)
        self.labels = list(type(self).labels)

    def __len__(self) -> int:
        return self.size

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        kind_id = sum(map(ord, self.kind))  # different sources never share random draws
        seed = [int(self.options.seed), _SPLIT_IDS[self.split], index, kind_id, stream]
        return np.random.default_rng(seed)

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"sample {index} out of range for {self.kind} of size {self.size}")
        return index

    def is_negative(self, index: int) -> bool:
        """Whether sample ``index`` has no object."""
        return bool(self._rng(index, 2).random() < float(self.options.negatives))

    def background(self, index: int) -> tuple[np.ndarray, str]:
        """The background of sample ``index`` (before the object is pasted) and its name."""
        rng = self._rng(self._check_index(index), 0)
        height, width = self.canvases[int(rng.integers(len(self.canvases)))]
        return self._background(rng, height, width)

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        image, bg_name = self.background(index)
        name = f"{self.kind}/{self.split}/{index}"
        if self.is_negative(index):
            return Sample(image, np.zeros(4, np.float32), 0, f"{name}:{bg_name}")
        image = image.copy()
        box, obj_name = self._paste(self._rng(index, 1), image)
        return Sample(image, box.astype(np.float32), 1, f"{name}:{bg_name}+{obj_name}")

    def _background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
        return np.zeros((height, width, 3), np.uint8), "black"

    def _paste(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, str]:
        """Draw the object into ``image`` in place; return its normalized xyxy box and name."""
        raise NotImplementedError


def _place(rng: np.random.Generator, obj_h: float, obj_w: float, height: int, width: int) -> tuple[int, int, int, int]:
    """Scale an object of aspect obj_w/obj_h to a random size and position: (x, y, w, h) pixels."""
    aspect = obj_w / obj_h * float(np.exp(rng.uniform(-0.15, 0.15)))  # mild stretch
    side = rng.uniform(*SCALE_RANGE)  # the larger relative side
    w, h = (side * width, side * width / aspect)
    if h / height > w / width:
        w, h = side * height * aspect, side * height
    w, h = max(4, int(round(w))), max(4, int(round(h)))
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    return x, y, w, h


def _norm_box(x: float, y: float, w: float, h: float, height: int, width: int) -> np.ndarray:
    return np.array([x / width, y / height, (x + w) / width, (y + h) / height], np.float64)


class Blobs(SyntheticSource):
    """White filled ellipses on black (reference design, step 1)."""

    kind = "blobs"
    labels = ["none", "blob"]

    def _paste(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, str]:
        height, width = image.shape[:2]
        x, y, w, h = _place(rng, rng.uniform(0.5, 2.0), 1.0, height, width)
        mask = np.zeros((height, width), np.uint8)
        center = (x + w / 2, y + h / 2)
        cv2.ellipse(mask, (center, (w, h), 0.0), 255, -1)  # axis-aligned, fills its box
        image[mask > 0] = 255
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        # The tight box around the white pixels (pixel edges, so x2 = last column + 1).
        box = _norm_box(cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0], height, width)
        return box, "ellipse"


def _cat_object(rng: np.random.Generator) -> np.ndarray:
    """The cat photo, slightly cropped and maybe mirrored."""
    cat = assets.load_image("chelsea")  # (300, 451, 3)
    ch, cw = cat.shape[:2]
    fy, fx = rng.uniform(0.85, 1.0, size=2)
    y0 = int(rng.uniform(0, ch * (1 - fy)))
    x0 = int(rng.uniform(0, cw * (1 - fx)))
    crop = cat[y0 : y0 + int(ch * fy), x0 : x0 + int(cw * fx)]
    return cv2.flip(crop, 1) if rng.random() < 0.5 else crop


class CatOnBlack(SyntheticSource):
    """The cat photo resized to a random size at a random position on black (step 2)."""

    kind = "cat-on-black"
    labels = ["none", "cat"]

    def _paste(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, str]:
        height, width = image.shape[:2]
        cat = _cat_object(rng)
        x, y, w, h = _place(rng, cat.shape[0], cat.shape[1], height, width)
        cat = assets.resize(cat, w, h)
        image[y : y + h, x : x + w] = assets.jitter_colors(rng, cat, strength=0.8)
        return _norm_box(x, y, w, h, height, width), "chelsea"


class CatOnScenes(CatOnBlack):
    """The same cat pasted on natural photos; test backgrounds are never seen in training (step 3)."""

    kind = "cat-on-scenes"
    canvases = CANVASES

    def _background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
        return assets.random_background(rng, assets.backgrounds(self.split), height, width)


# Skin tones (RGB) to colour the grey LFW crops.
_SKIN = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                  [141, 85, 36], [255, 224, 196], [234, 192, 134]], np.float32)


class FacesOnScenes(SyntheticSource):
    """Selfie-like portraits on natural photos; the box frames the face, not the crop.

    Train faces: the astronaut portrait and LFW crops 0-79; test faces: Grace Hopper's
    portrait and LFW crops 80-99, on held-out backgrounds.
    """

    kind = "faces-on-scenes"
    labels = ["none", "face"]
    canvases = CANVASES

    def _background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
        return assets.random_background(rng, assets.backgrounds(self.split, faces=True), height, width)

    def _paste(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, str]:
        height, width = image.shape[:2]
        faces = assets.FACES[assets.split_key(self.split)]
        # Portraits are few but large: give them a third of the draws.
        name = faces[0] if rng.random() < 1 / 3 else faces[1 + int(rng.integers(len(faces) - 1))]
        face = assets.face_crop(name)
        patch = face.image
        if name.startswith("lfw:") and rng.random() < 0.8:  # colour the grey crop
            tone = _SKIN[int(rng.integers(len(_SKIN)))] / 255.0
            patch = np.clip(patch.astype(np.float32) * tone * rng.uniform(0.9, 1.3), 0, 255).astype(np.uint8)
        bx1, by1, bx2, by2 = face.box
        if rng.random() < 0.5:  # mirror the patch and the face box with it
            patch = cv2.flip(patch, 1)
            bx1, bx2 = patch.shape[1] - bx2, patch.shape[1] - bx1

        # Place the face box, then the patch around it (the patch may leave the canvas).
        x, y, w, h = _place(rng, by2 - by1, bx2 - bx1, height, width)
        sx, sy = w / (bx2 - bx1), h / (by2 - by1)
        pw, ph = max(1, round(patch.shape[1] * sx)), max(1, round(patch.shape[0] * sy))
        interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
        patch = assets.jitter_colors(rng, cv2.resize(patch, (pw, ph), interpolation=interp), strength=0.7)
        px, py = x - round(bx1 * sx), y - round(by1 * sy)  # patch origin on the canvas
        alpha = _soft_mask(ph, pw) if face.soft_edges else None
        _blend(image, patch, px, py, alpha)
        return _norm_box(x, y, w, h, height, width), name


def _soft_mask(height: int, width: int) -> np.ndarray:
    """A feathered ellipse filling a (height, width) patch, float32 in [0, 1]."""
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, ((width / 2, height / 2), (width * 0.98, height * 0.98), 0.0), 1.0, -1)
    k = max(3, (min(height, width) // 12) | 1)
    return cv2.GaussianBlur(mask, (k, k), 0)


def _blend(image: np.ndarray, patch: np.ndarray, px: int, py: int, alpha: np.ndarray | None) -> None:
    """Paste ``patch`` with its top-left at (px, py), clipped to ``image``, in place."""
    height, width = image.shape[:2]
    x0, y0 = max(px, 0), max(py, 0)
    x1, y1 = min(px + patch.shape[1], width), min(py + patch.shape[0], height)
    if x1 <= x0 or y1 <= y0:
        return
    src = patch[y0 - py : y1 - py, x0 - px : x1 - px]
    if alpha is None:
        image[y0:y1, x0:x1] = src
        return
    a = alpha[y0 - py : y1 - py, x0 - px : x1 - px, None]
    dst = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (src * a + dst * (1 - a) + 0.5).astype(np.uint8)


# chelsea.png (451 x 300) is a close-up: the cat's head fills the photo up to x = 380.
CAT_BOX = (0, 0, 380, 300)


class _Chelsea:
    """The cat photo as a one-image object bank for ``data.paste.PasteSource``."""

    labels = ["none", "cat"]

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        image = assets.load_image("chelsea")
        h, w = image.shape[:2]
        x1, y1, x2, y2 = CAT_BOX
        return Sample(image, np.array([x1 / w, y1 / h, x2 / w, y2 / h], np.float32), 1, "chelsea")


def cat_cutouts(options: SourceOptions) -> Any:
    """The cat cut out of its photo under a soft mask (no rectangle edge to learn), strongly
    recoloured, from a tenth of the frame to larger than the frame (cut by its edges, as pets
    are in real photos), on the split's scenes: the default models' training data."""
    from data.paste import PasteOptions, PasteSource

    split = assets.split_key(options.split)
    if int(options.size) < 1:
        raise ValueError(f"size must be at least 1, got {options.size}")
    if not 0.0 <= float(options.negatives) < 1.0:
        raise ValueError(f"negatives must be a share in [0, 1), got {options.negatives}")
    # One head of fur has to stand in for whole cats: parts of it, stretched to other
    # aspect ratios, teach "box the whole furry region", not "box the eyes and nose".
    paste = PasteOptions(p=1.0, negatives=float(options.negatives), scale=(0.15, 1.4),
                         aspect=0.5, outside=0.35, scenes=1.0, object_color=0.9,
                         object_strength=1.2, margin=(0.05, 0.2), blends=(0.5, 0.4, 0.1),
                         part=0.5)
    return PasteSource(_Chelsea(), paste, seed=[int(options.seed), _SPLIT_IDS[split], 4_242],
                       size=int(options.size), scenes=assets.backgrounds(split), canvases=CANVASES)


class CatFigures(CatOnScenes):
    """Procedural whole-cat figures (``data.figures``) textured with the cat photo, on the
    same scenes, from a quarter of the frame to larger than the frame: boxes around whole
    animals."""

    kind = "cat-figures"

    def _paste(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, str]:
        height, width = image.shape[:2]
        pool = _figure_pool(self.split)
        k = int(rng.integers(len(pool)))
        figure, alpha = pool[k]
        if rng.random() < 0.5:
            figure, alpha = cv2.flip(figure, 1), cv2.flip(alpha, 1)
        figure = assets.jitter_colors(rng, figure, strength=0.8)
        fh, fw = figure.shape[:2]
        side = float(np.exp(rng.uniform(np.log(0.25), np.log(1.2))))  # larger side vs canvas
        scale = side * min(width / fw, height / fh) * float(np.exp(rng.uniform(-0.2, 0.2)))
        w, h = max(4, round(fw * scale)), max(4, round(fh * scale))
        figure, alpha = assets.resize(figure, w, h), cv2.resize(alpha, (w, h))
        x = int(rng.uniform(*sorted((-0.3 * w, width - 0.7 * w))))
        y = int(rng.uniform(*sorted((-0.3 * h, height - 0.7 * h))))
        _blend(image, figure, x, y, alpha)
        x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
        x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
        return np.array([x1 / width, y1 / height, x2 / width, y2 / height]), f"figure{k}"


FIGURES_PER_SPLIT = 300  # drawing a figure takes ~10 ms: draw a pool once, vary it per sample


_POOL_LOCK = threading.Lock()  # tf.data's parallel map asks from several threads at once


@functools.lru_cache(maxsize=None)
def _draw_pool(split: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from data.figures import cat_figure

    rng = np.random.default_rng([_SPLIT_IDS[split], 97_531])
    figures = []
    for _ in range(FIGURES_PER_SPLIT):
        image, alpha = cat_figure(rng)
        image.setflags(write=False)
        alpha.setflags(write=False)
        figures.append((image, alpha))
    return tuple(figures)


def _figure_pool(split: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The split's cat figures, drawn once per process from a seed of the split (the lock:
    lru_cache alone lets every thread that misses draw its own 300 figures)."""
    with _POOL_LOCK:
        return _draw_pool(split)
