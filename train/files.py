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

import csv
import io
import json
import logging
import re
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.contract import NO_OBJECT
from train.sources import Sample, SourceOptions, register

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
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


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file by its content into (h, w, 3) uint8 RGB; ValueError if unreadable.

    OpenCV first (fast); Pillow for what OpenCV cannot read (GIF). EXIF orientation is
    ignored: annotations refer to the stored pixel grid.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image {path} does not exist")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err.strerror or err}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data.tobytes())) as pil:
            return np.asarray(pil.convert("RGB"))
    except Exception:  # Pillow raises many types for non-images
        raise ValueError(f"{path} is not a readable image file") from None


def _probe(path: Path, full: bool, budget: list[int]) -> tuple[tuple[int, int], np.ndarray | None]:
    """((width, height), decoded image while ``budget`` bytes last) from the file's content.

    ``full`` decodes the whole image (catches truncated files); else only the header.
    """
    if full:
        image = read_image(path)
        keep = image.nbytes <= budget[0]  # racy across threads by a few images: harmless
        budget[0] -= image.nbytes if keep else 0
        return (image.shape[1], image.shape[0]), image if keep else None
    try:
        from PIL import Image

        with Image.open(path) as pil:
            return pil.size, None
    except Exception:  # missing, unreadable or not an image
        raise ValueError(f"{path} is missing or not a readable image file") from None


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
        problems = list(problems)
        entries = sorted(_merge(entries), key=lambda e: str(e.path))
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
        self.problems, self.skipped = problems, len(problems)
        if problems:
            shown = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            log.warning("%s %s: skipped %d entries:\n  %s%s", fmt, root, len(problems), shown, more)
        if not any(box is not None for _, box, _ in records):
            first = f" (first problem: {problems[0]})" if problems else ""
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


def _require(path: Path | None, fmt: str, what: str) -> Path:
    if path is None:
        raise ValueError(f"the {fmt} source needs data_dir (--data-dir): {what}")
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{fmt} data {path} does not exist; pass {what}")
    return path


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


# ---------------------------------------------------------------- CSV (selfie layout)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _parse_box(text: str) -> tuple[float, float, float, float] | None:
    """'[x1, y1, x2, y2]' (or the four numbers without brackets) -> floats; None if empty."""
    text = text.strip().strip("[]()").strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s;]+", text) if p]
    if len(parts) != 4 or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise ValueError(f"bbox {text!r} is not four numbers [x1, y1, x2, y2]")
    return tuple(float(p) for p in parts)  # type: ignore[return-value]


def _csv_row(row: list[str]) -> tuple[str, str, str]:
    """(path, bbox text, label) from a row; tolerates an unquoted '[x1, y1, x2, y2]'."""
    row = [c.strip() for c in row]
    if len(row) >= 5 and row[1].startswith("["):
        end = next((i for i in range(1, len(row)) if row[i].endswith("]")), None)
        if end is not None:
            row = [row[0], ",".join(row[1 : end + 1]), *row[end + 1 :]]
    if len(row) >= 5 and all(re.fullmatch(_NUMBER, c) for c in row[1:5]):
        row = [row[0], ",".join(row[1:5]), *row[5:]]  # path, x1, y1, x2, y2[, label]
    if len(row) < 2:
        raise ValueError("needs an image path and a bbox")
    return row[0], row[1], row[2] if len(row) > 2 and row[2] else "object"


@register("csv")
def csv_source(options: SourceOptions) -> FileSource:
    """`image path, "[x1, y1, x2, y2]"[, label]` rows in pixels; paths relative to the CSV."""
    path = _require(options.data_dir, "csv", "the labels CSV file (or its folder)")
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if len(found) != 1:
            raise ValueError(f"{path} holds {len(found)} CSV files; pass the labels CSV file itself")
        path = found[0]
    entries, problems, broken = [], [], set()
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read CSV {path}: {err}") from None
    for number, row in enumerate(rows, 1):
        if not any(c.strip() for c in row):
            continue
        where = f"{path.name}:{number}"
        try:
            image, bbox, label = _csv_row(row)
            box = _parse_box(bbox)
        except ValueError as err:
            if number == 1 and not re.search(r"\d", ",".join(row[1:2])):
                continue  # a header row
            problems.append(f"{where}: {err}")
            if row and row[0].strip():
                broken.add(path.parent / row[0].strip())  # its image would lose an object
            continue
        entries.append(Entry(path.parent / image, [(box, label)] if box else [], where))
    entries = [e for e in entries if e.path not in broken]
    return FileSource("csv", path, entries, problems, options)


# ---------------------------------------------------------------- Pascal VOC
@register("voc")
def voc_source(options: SourceOptions) -> FileSource:
    """A VOC folder: images/ (or JPEGImages/) + annotations/*.xml, or XML next to the images."""
    root = _require(options.data_dir, "voc", "the VOC folder (images/ and annotations/)")
    ann_dir = next((root / d for d in ("annotations", "Annotations") if (root / d).is_dir()), root)
    xmls = sorted(ann_dir.rglob("*.xml"))
    if not xmls:
        raise ValueError(f"no VOC annotation (*.xml) under {ann_dir}")
    folders = [root / d for d in ("images", "JPEGImages") if (root / d).is_dir()] + [root]
    entries, problems = [], []
    for xml_path in xmls:
        where = str(xml_path.relative_to(root))
        try:
            tree = ET.parse(xml_path).getroot()
            objects = []
            for obj in tree.iter("object"):
                bb = obj.find("bndbox")
                if bb is None:
                    raise ValueError("an <object> has no <bndbox>")
                box = tuple(float((bb.findtext(k) or "nan").strip()) for k in ("xmin", "ymin", "xmax", "ymax"))
                objects.append((box, (obj.findtext("name") or "object").strip()))
        except (ET.ParseError, ValueError) as err:
            problems.append(f"{where}: malformed XML ({err})")
            continue
        image = _voc_image(tree.findtext("filename") or "", xml_path, folders)
        if image is None:
            problems.append(f"{where}: image {tree.findtext('filename') or xml_path.stem!r} not found")
            continue
        entries.append(Entry(image, objects, where))
    return FileSource("voc", root, entries, problems, options)


def _voc_image(filename: str, xml_path: Path, folders: list[Path]) -> Path | None:
    names = [filename.strip()] if filename.strip() else []
    names += [xml_path.stem + ext for ext in IMAGE_EXTS]
    for folder in [xml_path.parent, *folders]:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


# ---------------------------------------------------------------- YOLO
@register("yolo")
def yolo_source(options: SourceOptions) -> FileSource:
    """images/ + labels/*.txt (`class cx cy w h`, normalized); names from classes.txt or data.yaml.

    An image whose label file is empty or missing is a negative (YOLO's convention).
    """
    root = _require(options.data_dir, "yolo", "the YOLO folder (images/ and labels/)")
    names = _yolo_names(root)
    images = _find_images(root / "images" if (root / "images").is_dir() else root)
    if not images:
        raise ValueError(f"no images under {root}")
    entries, problems = [], []
    for image in images:
        txt = _yolo_label_path(root, image)
        where = str(txt.relative_to(root)) if txt.is_relative_to(root) else str(txt)
        try:
            lines = txt.read_text().splitlines() if txt.is_file() else []
            objects = [_yolo_object(line, names) for line in lines if line.strip()]
        except (ValueError, UnicodeDecodeError) as err:
            problems.append(f"{where}: {err}")
            continue
        entries.append(Entry(image, objects, where, normalized=True))
    if not any(_yolo_label_path(root, e.path).is_file() for e in entries) and not problems:
        raise ValueError(f"no YOLO label file (labels/NAME.txt) for any image under {root}")
    return FileSource("yolo", root, entries, problems, options)


def _yolo_label_path(root: Path, image: Path) -> Path:
    parts = list(image.relative_to(root).parts)
    if "images" in parts:  # images/train/a.jpg -> labels/train/a.txt
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
        return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_object(line: str, names: dict[int, str]) -> tuple[tuple[float, float, float, float], str]:
    fields = line.split()
    try:
        cls, values = int(fields[0]), [float(v) for v in fields[1:]]
    except (ValueError, IndexError):
        raise ValueError(f"line {line.strip()!r} is not 'class cx cy w h'") from None
    if len(values) == 4:
        cx, cy, w, h = values
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    elif len(values) >= 6 and len(values) % 2 == 0:  # a segmentation polygon: its bounds
        xs, ys = values[0::2], values[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
    else:
        raise ValueError(f"line {line.strip()!r} is not 'class cx cy w h'")
    return box, names.get(cls, f"class{cls}")


def _yolo_names(root: Path) -> dict[int, str]:
    """Class names from classes.txt (one a line) or data.yaml's ``names`` (list or mapping)."""
    for txt in (root / "classes.txt", root / "labels" / "classes.txt"):
        if txt.is_file():
            return {i: n.strip() for i, n in enumerate(txt.read_text().splitlines()) if n.strip()}
    for yaml in (root / "data.yaml", root / "dataset.yaml"):
        if yaml.is_file():
            return _yaml_names(yaml.read_text())
    return {}


def _yaml_names(text: str) -> dict[int, str]:
    """The ``names`` of a YOLO data.yaml without a YAML library: [a, b], '- a' lines or '0: a'."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        inline = m.group(1).split("#")[0].strip()
        if inline.startswith("["):
            items = [s.strip().strip("'\"") for s in inline.strip("[]").split(",") if s.strip()]
            return dict(enumerate(items))
        out: dict[int, str] = {}
        for sub in lines[i + 1 :]:
            if sub.strip() and not sub[0].isspace() and not sub.startswith("-"):
                break
            item = sub.split("#")[0].strip()
            if item.startswith("-"):
                out[len(out)] = item[1:].strip().strip("'\"")
            elif ":" in item:
                key, value = item.split(":", 1)
                if key.strip().isdigit():
                    out[int(key)] = value.strip().strip("'\"")
        return out
    return {}


# ---------------------------------------------------------------- COCO
@register("coco")
def coco_source(options: SourceOptions) -> FileSource:
    """A COCO JSON file (``bbox`` = [x, y, w, h] pixels); images next to it or in images/."""
    path = _require(options.data_dir, "coco", "the COCO JSON file (or its folder)")
    if path.is_dir():
        found = sorted(path.glob("*.json")) or sorted((path / "annotations").glob("*.json"))
        if len(found) != 1:
            raise ValueError(f"{path} holds {len(found)} JSON files; pass the COCO JSON file itself")
        path = found[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images, anns = data["images"], data.get("annotations", [])
        cats = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a COCO JSON file ({type(err).__name__}: {err})") from None
    folders = [path.parent, path.parent / "images", path.parent.parent / "images", path.parent.parent]
    entries: dict[int, Entry] = {}
    problems, broken = [], set()
    for img in images:
        try:
            name = str(img["file_name"])
            file = next((f / name for f in folders if (f / name).is_file()), path.parent / name)
            entries[int(img["id"])] = Entry(file, [], f"{path.name}: image {img['id']} ({name})")
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path.name}: malformed image record {str(img)[:80]}")
    for ann in anns:
        try:
            if ann.get("iscrowd"):
                continue
            image_id = int(ann["image_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
            entry = entries[image_id]
            entry.objects.append(((x, y, x + w, y + h), cats.get(int(ann.get("category_id", -1)), "object")))
        except (KeyError, TypeError, ValueError, AttributeError):
            problems.append(f"{path.name}: malformed annotation {str(ann)[:80]}")
            if isinstance(ann, dict) and str(ann.get("image_id", "")).isdigit():
                broken.add(int(ann["image_id"]))  # its image would lose an object: drop it too
    kept = [e for i, e in entries.items() if i not in broken]
    return FileSource("coco", path, kept, problems, options)
