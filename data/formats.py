"""The annotation formats of file sources: selfie CSV, Pascal VOC, YOLO and COCO.

Each loader parses its annotations into (image path, objects) entries and hands them to
``data.files.FileSource``, which checks the images, applies ``multi`` and splits.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from data.files import Entry, FileSource
from data.images import IMAGE_EXTS, list_images, read_bytes
from data.sources import SourceOptions


def _require(path: Path | None, fmt: str, what: str) -> Path:
    if path is None:
        raise ValueError(f"the {fmt} source needs data_dir (--data-dir): {what}")
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{fmt} data {path} does not exist; pass {what}")
    return path




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
        lines = read_bytes(path, what="CSV file").splitlines()
    except ValueError as err:
        raise ValueError(f"cannot read CSV {path}: {err}") from None
    for number, raw in enumerate(lines, 1):
        where = f"{path.name}:{number}"
        try:  # one undecodable line is one bad row, not a bad file
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            row = next(csv.reader([text]), [])
        except (UnicodeDecodeError, csv.Error) as err:
            problems.append(f"{where}: not a UTF-8 CSV row ({err})")
            continue
        if not any(c.strip() for c in row):
            continue
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
    # <filename> is a bare name in VOC; a path in it is never followed out of the dataset.
    name = Path(filename.strip().replace("\\", "/")).name
    names = [name] if name not in ("", ".", "..") else []
    names += [xml_path.stem + ext for ext in IMAGE_EXTS]
    for folder in [xml_path.parent, *folders]:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


# ---------------------------------------------------------------- YOLO
def yolo_source(options: SourceOptions) -> FileSource:
    """images/ + labels/*.txt (`class cx cy w h`, normalized); names from classes.txt or data.yaml.

    An image whose label file is empty or missing is a negative (YOLO's convention).
    """
    root = _require(options.data_dir, "yolo", "the YOLO folder (images/ and labels/)")
    names = _yolo_names(root)
    images = list_images(root / "images" if (root / "images").is_dir() else root, recursive=True)
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
