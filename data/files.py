"""File sources: labelled images on disk in the selfie CSV, Pascal VOC, YOLO or COCO layout.

Each loader parses its annotations into one list of (image path, objects) entries; the
shared ``FileSource`` then checks every image (decoded by content, never by extension),
trusts the decoded size over any size field, clips boxes that stick out a little,
rejects broken entries with a logged list, applies ``multi`` (``skip`` images with
several objects or keep the ``largest``), and splits by a seeded shuffle: ``val_fraction``
held out, half for validation and half for the test.
Images explicitly annotated with no object are negatives (label 0).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.images import image_size, read_image
from data.sources import Sample, SourceOptions
from runtime.contract import NO_OBJECT

log = logging.getLogger(__name__)

MULTI = ("skip", "largest")
SPLITS = ("train", "val", "test", "all")
CLIP_TOLERANCE = 0.02  # a box may stick out by 2% of the image side (or 2 px) and is clipped
FULL_CHECK_LIMIT = 5000  # up to this many images, decode each fully when the source is built


@dataclass
class Entry:
    """One image and its annotated objects: ((x1, y1, x2, y2) pixels, class name) pairs."""

    path: Path
    objects: list[tuple[tuple[float, float, float, float], str]] = field(default_factory=list)
    where: str = ""  # annotation file (and row) for messages
    normalized: bool = False  # YOLO boxes are fractions of the (decoded) image size


def _probe(path: Path, full: bool, budget: list[int]) -> tuple[tuple[int, int], np.ndarray | None]:
    """((width, height), decoded image while ``budget`` bytes last) from the file's content.

    ``full`` decodes the whole image (catches truncated files); else only the header.
    """
    if full:
        image = read_image(path)
        keep = image.nbytes <= budget[0]  # racy across threads by a few images: harmless
        budget[0] -= image.nbytes if keep else 0
        return (image.shape[1], image.shape[0]), image if keep else None
    return image_size(path), None


def _split(n: int, options: SourceOptions, what: str) -> np.ndarray:
    """Indices of ``options.split``: a seeded shuffle holds out ``val_fraction`` of the images,
    half of them for validation (checkpoint choice) and half for the final test, so the test
    images never pick the model they score."""
    order = np.random.default_rng(int(options.seed)).permutation(n)
    held = int(round(n * float(options.val_fraction)))
    if options.val_fraction > 0 and n >= 2:
        held = min(max(held, 1), n - 1)
    if held == 1:  # one image cannot be split: validation and test share it
        log.warning("%s: only 1 held-out image, used for both val and test; raise val_fraction", what)
        val = test = order[:1]
    else:
        n_val = (held + 1) // 2
        val, test = order[:n_val], order[n_val:held]
    return {"train": order[held:], "val": val, "test": test}.get(options.split, order)


@dataclass
class _Scan:
    """The checked images of one dataset, shared by its train/val/test sources."""

    records: list[tuple[Path, np.ndarray | None, str | None]]
    images: list[np.ndarray | None]
    problems: list[str]


_SCANS: dict[tuple, _Scan] = {}  # the last few datasets: train, val and test share one scan
_SCANS_KEPT = 2


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
        return info.st_mtime_ns, info.st_size
    except OSError:
        return 0, -1


def _scan(fmt: str, root: Path, entries: list[Entry], problems: list[str],
          options: SourceOptions) -> _Scan:
    """Check every image once (decoding small sets fully) and log the skipped entries once."""
    entries = sorted(_merge(entries), key=lambda e: str(e.path))
    key = (fmt, str(root), options.multi, float(options.cache_mb),
           tuple((str(e.path), _stamp(e.path), tuple(e.objects), e.normalized) for e in entries),
           tuple(problems))
    if key in _SCANS:
        return _SCANS[key]
    problems = list(problems)
    # Small sets: decode every image now (catches truncated files, fills the cache).
    full = len(entries) <= FULL_CHECK_LIMIT
    budget = [int(float(options.cache_mb) * 2**20)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # decoders release the GIL
        probes = list(pool.map(lambda e: _try(_probe, e.path, full, budget), entries))
    records, images = [], []
    for entry, probe in zip(entries, probes):
        record = probe if isinstance(probe, str) else _choose(entry, probe[0], options.multi)
        if isinstance(record, str):
            problems.append(f"{entry.where or entry.path}: {record}")
        else:
            records.append(record)
            images.append(probe[1])
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        log.warning("%s %s: skipped %d entries:\n  %s%s", fmt, root, len(problems), shown, more)
    while len(_SCANS) >= _SCANS_KEPT:
        _SCANS.pop(next(iter(_SCANS)))
    _SCANS[key] = _Scan(records, images, problems)
    return _SCANS[key]


class FileSource:
    """Samples from labelled image files; see the module docstring for the rules."""

    def __init__(self, fmt: str, root: Path, entries: list[Entry], problems: list[str], options: SourceOptions):
        if options.multi not in MULTI:
            raise ValueError(f"unknown multi mode {options.multi!r}; valid: {', '.join(MULTI)}")
        if options.split not in SPLITS:
            raise ValueError(f"unknown split {options.split!r}; valid: {', '.join(SPLITS)}")
        if not 0.0 <= float(options.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {options.val_fraction}")
        self.format, self.root, self.options = fmt, root, options
        scan = _scan(fmt, root, entries, problems, options)
        records, images = scan.records, scan.images
        self.problems, self.skipped = scan.problems, len(scan.problems)
        if not any(box is not None for _, box, _ in records):
            first = f" (first problem: {scan.problems[0]})" if scan.problems else ""
            raise ValueError(f"{fmt} data at {root} has no usable image with an object{first}")
        self.labels = [NO_OBJECT, *sorted({name for _, box, name in records if box is not None})]
        chosen = _split(len(records), options, f"{fmt} data at {root}")
        if len(chosen) == 0:
            raise ValueError(f"{fmt} data at {root}: split {options.split!r} is empty; change val_fraction")
        chosen = sorted(chosen)
        self.records = [records[i] for i in chosen]
        self.total = len(records)
        self._cache: dict[int, np.ndarray] = {}
        self._cache_left = int(float(options.cache_mb) * 2**20)
        self._lock = threading.Lock()
        for index, i in enumerate(chosen):
            if images[i] is not None:
                self._remember(index, images[i])
        n_neg = sum(box is None for _, box, _ in self.records)
        log.info("%s %s: %d usable images, split %s has %d (%d negatives); labels %s",
                 fmt, root, len(records), options.split, len(self.records), n_neg, self.labels)

    def __len__(self) -> int:
        return len(self.records)

    def label_of(self, index: int) -> int:
        """The label of sample ``index`` without decoding its image."""
        _, box, name = self.records[index]
        return 0 if box is None else self.labels.index(name)

    def _remember(self, index: int, image: np.ndarray) -> None:
        with self._lock:
            if image.nbytes <= self._cache_left:  # small datasets stay decoded in memory
                self._cache_left -= image.nbytes
                image.setflags(write=False)
                self._cache[index] = image

    def __getitem__(self, index: int) -> Sample:
        path, box, name = self.records[index]
        image = self._cache.get(index)
        if image is None:
            image = read_image(path)
            self._remember(index, image)
        if box is None:
            return Sample(image, np.zeros(4, np.float32), 0, str(path))
        h, w = image.shape[:2]
        norm = np.clip(box / (w, h, w, h), 0.0, 1.0).astype(np.float32)
        return Sample(image, norm, self.labels.index(name), str(path))


def _try(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except ValueError as err:
        return str(err)


def _merge(entries: list[Entry]) -> list[Entry]:
    """One entry per image: rows of the same image (CSV, COCO) are several objects."""
    merged: dict[Path, Entry] = {}
    for entry in entries:
        if entry.path in merged:
            merged[entry.path].objects.extend(entry.objects)
        else:
            merged[entry.path] = Entry(entry.path, list(entry.objects), entry.where, entry.normalized)
    return list(merged.values())


def _choose(entry: Entry, size: tuple[int, int], multi: str) -> tuple[Path, np.ndarray | None, str | None] | str:
    """Validate the objects of one image and pick one: (path, pixel box or None, name) or a problem."""
    width, height = size
    boxes = []
    for box, name in entry.objects:
        box_px = np.asarray(box, np.float64) * ((width, height, width, height) if entry.normalized else 1)
        checked = _check_box(box_px, width, height)
        if isinstance(checked, str):
            return checked
        if name == NO_OBJECT:
            return f"class name {NO_OBJECT!r} is reserved for 'no object'"
        boxes.append((checked, name))
    if not boxes:
        return entry.path, None, None  # explicitly annotated with no object: a negative
    if len(boxes) > 1:
        if multi == "skip":
            return f"{len(boxes)} objects (multi='skip'; use multi='largest' to keep the largest)"
        boxes.sort(key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
    return entry.path, boxes[0][0], boxes[0][1]


def _check_box(box: np.ndarray, width: int, height: int) -> np.ndarray | str:
    x1, y1, x2, y2 = box
    text = f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
    if not np.all(np.isfinite(box)):
        return f"{text} is not a number"
    if x2 < x1 or y2 < y1:
        return f"{text} has x2 < x1 or y2 < y1"
    tol_x, tol_y = max(2.0, CLIP_TOLERANCE * width), max(2.0, CLIP_TOLERANCE * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        return f"{text} lies outside the {width}x{height} image"
    clipped = np.clip(box, 0, (width, height, width, height))
    if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
        return f"{text} is empty (under 1 pixel wide or high)"
    return clipped
