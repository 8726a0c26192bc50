"""File sources: labelled images on disk in the selfie CSV, Pascal VOC, YOLO or COCO layout.

Each loader parses its annotations into one list of (image path, objects) entries; the
shared ``FileSource`` then checks every image (decoded by content, never by extension),
checks a declared image size (VOC ``<size>``, COCO ``width``/``height``) against the
image as displayed, clips boxes that stick out a little, rejects broken entries with a
logged list, applies ``multi`` (``skip`` images with several objects or keep the
``largest``), and splits by a seeded shuffle: ``val_fraction`` held out, half for
validation and half for the test.
Images explicitly annotated with no object are negatives (label 0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.images import ImageError, image_size, orientation, read_bytes, read_image
from data.sources import Sample, SourceOptions
from runtime.contract import NO_OBJECT

log = logging.getLogger(__name__)

MULTI = ("skip", "largest")
SPLITS = ("train", "val", "test", "all")
CLIP_TOLERANCE = 0.02  # a box may stick out by 2% of the image side (or 2 px) and is clipped
FULL_CHECK_LIMIT = 5000  # up to this many images, decode each fully when the source is built
ANNOTATION_LIMIT = 16 * 2**20  # one VOC XML, YOLO label file, classes.txt or data.yaml
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"  # what float() takes, less "1_0", "nan", "inf"
_SIZE_FIELD = {"voc": "<size>", "coco": "the image's width/height"}  # where a format declares it


@dataclass
class Entry:
    """One image and its annotated objects: ((x1, y1, x2, y2) pixels, class name) pairs."""

    path: Path
    objects: list[tuple[tuple[float, float, float, float], str]] = field(default_factory=list)
    where: str = ""  # annotation file (and row) for messages
    normalized: bool = False  # YOLO boxes are fractions of the (decoded) image size
    size: tuple[int, int] | None = None  # (width, height) the annotation declares, if any
    broken: bool = False  # a bad row or annotation of this image (already a problem): drop it
    whole: bool = False  # lists all of its image's objects (a VOC XML, COCO image, YOLO label file)


def distinct_names(names: dict[int, str], where: object, kind: str, fix: str,
                   used: set[int] | None = None) -> None:
    """ValueError naming ``where`` when two ids (of those in ``used``, if given) share a name:
    their objects would silently train as one class. An unused id may repeat a name (Roboflow's
    COCO exports add a category 0 named after the project, often its one class)."""
    first: dict[str, int] = {}
    for cls, name in names.items():
        if used is not None and cls not in used:
            continue
        if first.setdefault(name, cls) != cls:
            raise ValueError(f"{where}: {kind} {first[name]} and {cls} are both named {name!r}; {fix}")


def require_data(path: Path | None, fmt: str, what: str) -> Path:
    """``data_dir`` of a file source, or a ValueError saying what to pass."""
    if path is None:
        raise ValueError(f"the {fmt} source needs data_dir (--data-dir): {what}")
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{fmt} data {path} does not exist; pass {what}")
    return path


def read_annotation(path: Path, what: str, limit: int | None = None) -> bytes:
    """An annotation file's bytes: regular files only, at most ``limit`` bytes
    (``ANNOTATION_LIMIT`` by default), so a FIFO or a device is refused, never waited on.

    Raises ValueError naming the file for every way it cannot be read.
    """
    try:
        return read_bytes(path, what=what, limit=ANNOTATION_LIMIT if limit is None else limit)
    except OSError as err:  # a read error after the open (EIO, a file vanishing on NFS)
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None


def read_text(path: Path, what: str) -> str:
    """A UTF-8 annotation file read by ``read_annotation``; ValueError naming it if not UTF-8."""
    data = read_annotation(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {err.start}); "
                         "re-save it as UTF-8") from None


def outside(name: str) -> bool:
    """Whether a file name written in an annotation leaves the dataset folder: an absolute
    path (``/x``, ``C:\\x``) or one with a ``..`` part (``\\`` read as ``/``)."""
    text = name.strip().replace("\\", "/")
    return text.startswith("/") or bool(re.match(r"[A-Za-z]:/", text)) or ".." in text.split("/")


def is_file(path: Path) -> bool:
    """``path.is_file()``, also False for a name the system refuses (over its length limit),
    where pathlib raises: a name written in an annotation is a problem, never the run."""
    try:
        return path.is_file()
    except OSError:
        return False


def number(text: str) -> float:
    """A decimal number written in an annotation; ValueError for anything else."""
    if not re.fullmatch(NUMBER, text.strip()):
        raise ValueError(f"{text.strip()[:40]!r} is not a number")
    return float(text)


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
    if held == 1 and options.split != "all":  # one image cannot be split: validation and test share it
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
    pictures: list[int]  # per record: hard links of one file share a number (split together)


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
    entries, conflicts = _merge(entries)
    entries.sort(key=lambda e: str(e.path))
    problems = [*problems, *conflicts]
    key = (fmt, str(root), options.multi, float(options.cache_mb),
           tuple((str(e.path), _stamp(e.path), tuple(e.objects), e.normalized, e.size) for e in entries),
           tuple(problems))
    if key in _SCANS:
        return _SCANS[key]
    # Small sets: decode every image now (catches truncated files, fills the cache).
    full = len(entries) <= FULL_CHECK_LIMIT
    budget = [int(float(options.cache_mb) * 2**20)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # decoders release the GIL
        probes = list(pool.map(lambda e: _try(_probe, e.path, full, budget), entries))
    records, images = [], []
    for entry, probe in zip(entries, probes):
        record = probe if isinstance(probe, str) else (
            _size_problem(entry, probe[0], fmt) or _choose(entry, probe[0], options.multi))
        if isinstance(record, str):
            problems.append(f"{entry.where or entry.path}: {record}")
        else:
            records.append(record)
            images.append(probe[1])
    pictures, copies = _pictures([path for path, _, _ in records])
    if copies:  # hard links are split together; copies may land in training and in the test
        log.warning("%s %s: %d images are byte-identical copies of others under other names; the "
                    "test may score pictures trained on: remove the copies", fmt, root, copies)
    warn_case(sorted({name for _, box, name in records if box is not None}), fmt, root)
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        log.warning("%s %s: skipped %d entries:\n  %s%s", fmt, root, len(problems), shown, more)
    while len(_SCANS) >= _SCANS_KEPT:
        _SCANS.pop(next(iter(_SCANS)))
    _SCANS[key] = _Scan(records, images, problems, pictures)
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
        self.images = frozenset(os.path.realpath(path) for path, _, _ in records)  # every split's
        picked = set(_split(len(set(scan.pictures)), options, f"{fmt} data at {root}").tolist())
        chosen = [i for i, picture in enumerate(scan.pictures) if picture in picked]
        if len(chosen) == 0:
            raise ValueError(f"{fmt} data at {root}: split {options.split!r} is empty; change val_fraction")
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


def _merge(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """One entry per image (by resolved path: ``sub/../a.jpg`` and ``/abs/a.jpg`` are one
    image), rows of the same image (CSV, COCO) being several objects; and the problems.

    A ``broken`` entry drops its image (its problem is already listed); an image annotated
    both with boxes and as a negative, or by two ``whole`` annotations that differ (two VOC
    XMLs, two COCO image records, a linked copy with its own YOLO labels), is a problem and
    dropped.
    """
    groups: dict[Path, list[Entry]] = {}
    merged, problems = [], []
    for entry in entries:
        try:
            groups.setdefault(Path(os.path.realpath(entry.path)), []).append(entry)
        except ValueError as err:  # a NUL byte in a name written in the annotations
            problems.append(f"{entry.where or entry.path}: image path {str(entry.path)[-60:]!r}: {err}; "
                            "fix the file name")
    for group in groups.values():
        if any(e.broken for e in group):
            continue
        first = group[0]
        boxed = [e for e in group if e.objects]
        if boxed and len(boxed) < len(group):
            negative = next(e for e in group if not e.objects)
            problems.append(f"{boxed[0].where or first.path}: image {first.path.name} has a box here and "
                            f"an empty box (a negative) in {negative.where}; keep one of them")
            continue
        other = next((e for e in group if e.whole and set(e.objects) != set(first.objects)), None)
        if other is not None:  # two complete annotations of one picture: which one is right?
            problems.append(f"{first.where or first.path}: image {first.path.name} is annotated again, with "
                            f"other boxes, in {other.where or other.path}; keep one annotation of it")
            continue
        sizes = {e.size for e in group if e.size is not None}
        if len(sizes) > 1:
            problems.append(f"{first.where or first.path}: image {first.path.name} is declared with "
                            f"different sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}); fix them")
            continue
        # a row listed twice is one object, not two
        objects = list(dict.fromkeys(obj for e in group for obj in e.objects))
        merged.append(Entry(first.path, objects, first.where, first.normalized, next(iter(sizes), None)))
    return merged, problems


def _pictures(paths: list[Path]) -> tuple[list[int], int]:
    """(a picture number per path, shared by hard links so the split keeps them on one side;
    how many files are byte-identical copies of another file, read only where sizes match).

    Copies under other names are counted and warned about, not grouped: datasets (and this
    project's tests) hold deliberate copies that are meant to be separate samples."""
    keys: list[object] = []
    for path in paths:
        try:
            info = os.stat(path)
            keys.append((info.st_size, info.st_dev, info.st_ino))
        except OSError:  # vanished since the scan: its own picture
            keys.append(str(path))
    numbers: dict[object, int] = {}
    pictures = [numbers.setdefault(key, len(numbers)) for key in keys]
    files = {key: path for path, key in zip(paths, keys) if isinstance(key, tuple)}  # one per inode
    sizes: dict[int, list[tuple[int, int, int]]] = {}
    for key in files:
        sizes.setdefault(key[0], []).append(key)
    digests = []
    for same in (group for group in sizes.values() if len(group) > 1):
        for key in same:
            try:
                digests.append((key[0], hashlib.sha256(read_bytes(files[key])).digest()))
            except (OSError, ValueError):  # swapped for something unreadable: the probe says why
                pass
    return pictures, len(digests) - len(set(digests))


def _size_problem(entry: Entry, size: tuple[int, int], fmt: str) -> str | None:
    """Why the size an annotation declares is not the image's as displayed (None: it is)."""
    if entry.size is None or tuple(entry.size) == tuple(size):
        return None
    (dw, dh), (width, height) = entry.size, size
    if (dh, dw) == (width, height) and _rotated(entry.path):
        return (f"declares {dw}x{dh}, the image is {width}x{height} upright (EXIF orientation): the "
                "boxes were drawn on the unrotated frame; re-label it upright or remove its orientation tag")
    return (f"declares {dw}x{dh} but the image is {width}x{height} as displayed; "
            f"fix {_SIZE_FIELD.get(fmt, 'the declared size')} or the boxes")


def _rotated(path: Path) -> bool:
    """Whether the image's EXIF orientation turns it by 90 degrees when displayed."""
    try:
        return orientation(path) in (5, 6, 7, 8)
    except ImageError:
        return False


def warn_case(labels: list[str], fmt: str, root: Path | str) -> None:
    """Log labels that differ only in case: they are kept apart, which is rarely meant."""
    groups: dict[str, list[str]] = {}
    for name in labels:
        groups.setdefault(name.casefold(), []).append(name)
    for same in (g for g in groups.values() if len(g) > 1):
        log.warning("%s %s: labels %s differ only in case; they are separate classes",
                    fmt, root, " and ".join(repr(n) for n in same))


def _choose(entry: Entry, size: tuple[int, int], multi: str) -> tuple[Path, np.ndarray | None, str | None] | str:
    """Validate the objects of one image and pick one: (path, pixel box or None, name) or a problem."""
    width, height = size
    boxes = []
    for box, name in entry.objects:
        box_px = np.asarray(box, np.float64) * ((width, height, width, height) if entry.normalized else 1)
        checked = _check_box(box_px, width, height)
        if isinstance(checked, str):
            return checked
        if name.strip().lower() == NO_OBJECT:
            return f"class name {name!r} is reserved for 'no object' (label 0); rename the class"
        if not name.isprintable():  # a label is one line of every table, plot and output line
            return f"class name {name[:40]!r} holds a line break or control character; rename the class"
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
