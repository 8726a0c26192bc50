"""The annotation formats of file sources: selfie CSV, Pascal VOC, YOLO and COCO.

Each loader parses its annotations into (image path, objects) entries and hands them to
``data.files.FileSource``, which checks the images, applies ``multi`` and splits. CSV and
VOC live here, YOLO (with its small data.yaml reader) in ``data.yolo``, COCO in
``data.coco``. Annotation files are read through ``data.files.read_annotation``: regular files
only, size-capped, so a FIFO or a device named ``a.xml`` is a problem, never a hang.
"""

from __future__ import annotations

import csv
import io
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from data.coco import coco_source
from data.files import NUMBER, Entry, FileSource, is_file, number, outside, read_annotation, require_data
from data.images import IMAGE_EXTS, MAX_FILE_BYTES, is_image_name
from data.sources import SourceOptions
from data.yolo import yolo_source

# ---------------------------------------------------------------- CSV (selfie layout)
# Header names of each column role; a header that names its columns is read by name.
_COLUMNS = {
    "image": ("image", "filename", "file", "path", "image_path"),
    "bbox": ("bbox", "box"),
    "label": ("label", "class", "name", "category"),
    "x1": ("x1", "xmin", "left"), "y1": ("y1", "ymin", "top"),
    "x2": ("x2", "xmax", "right"), "y2": ("y2", "ymax", "bottom"),
    "x": ("x",), "y": ("y",), "w": ("w", "width"), "h": ("h", "height"),
}
# The ways a header can give the box, in order of preference: with corner columns,
# "width"/"height" are usually the image's size (the TF object-detection CSV), not the box's.
_BOX_COLUMNS = (("bbox",), ("x1", "y1", "x2", "y2"), ("x", "y", "w", "h"))
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _parse_box(text: str) -> tuple[float, float, float, float] | None:
    """'[x1, y1, x2, y2]' (or the four numbers without brackets) -> floats; None if empty."""
    text = text.strip().strip("[]()").strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s;]+", text) if p]
    if len(parts) != 4 or not all(re.fullmatch(NUMBER, p) for p in parts):
        raise ValueError(f"bbox {text[:60]!r} is not four numbers [x1, y1, x2, y2]")
    return tuple(float(p) for p in parts)  # type: ignore[return-value]


def _csv_row(row: list[str]) -> tuple[str, str, str]:
    """(path as written, bbox text, label) of a positional row; tolerates an unquoted box."""
    row = [row[0], *(c.strip() for c in row[1:])]
    if len(row) >= 5 and row[1].startswith("["):
        end = next((i for i in range(1, len(row)) if row[i].endswith("]")), None)
        if end is not None:
            row = [row[0], ",".join(row[1 : end + 1]), *row[end + 1 :]]
    if len(row) >= 5 and all(re.fullmatch(NUMBER, c) for c in row[1:5]):
        row = [row[0], ",".join(row[1:5]), *row[5:]]  # path, x1, y1, x2, y2[, label]
    if len(row) < 2:
        raise ValueError("needs an image path and a bbox")
    return row[0], row[1], row[2] if len(row) > 2 and row[2] else "object"


def _header_columns(row: list[str], path: Path) -> dict[str, int] | None:
    """Column roles a header row names (None: the positional ``image,bbox,label``).

    Raises ValueError naming the file when the header names columns this reader cannot map.
    """
    split_by = next((d for d in ";\t|" if d in row[0]), None) if len(row) == 1 else None
    if split_by:  # Excel in many locales saves "CSV" with semicolons
        raise ValueError(f"CSV {path}: the first row {row[0][:60]!r} has no comma but {split_by!r}; "
                         "save the file with commas between the columns (the bbox in quotes)")
    roles: dict[str, int] = {}
    for i, cell in enumerate(c.strip().lower() for c in row):
        role = next((r for r, names in _COLUMNS.items() if cell in names), None)
        if role in roles:
            raise ValueError(f"CSV {path}: the header names the {role} column twice ({row[roles[role]]!r}, "
                             f"{row[i]!r}); rename one of them")
        if role is not None:
            roles[role] = i
    box = next((b for b in _BOX_COLUMNS if all(r in roles for r in b)), None)
    if "image" not in roles or box is None:
        accepted = "; ".join(f"{role}: {'/'.join(names)}" for role, names in _COLUMNS.items())
        raise ValueError(f"CSV {path}: cannot tell the columns from the header {','.join(row)[:80]!r}; "
                         f"name them ({accepted}; x/y/w/h is x, y, width, height in pixels) "
                         "or drop the header to use the positional layout image,bbox,label")
    if roles in ({"image": 0, "bbox": 1}, {"image": 0, "bbox": 1, "label": 2}):
        return None  # the positional layout, which also takes an unquoted [x1, y1, x2, y2]
    return {r: roles[r] for r in ("image", "label", *box) if r in roles}


def _is_header(row: list[str]) -> bool:
    """A first row with no number, no box and no image name in it names the columns."""
    return not is_image_name(row[0].strip()) and not any(
        re.fullmatch(NUMBER, c.strip()) or re.search(r"\[\s*" + NUMBER, c) for c in row)


def _named_row(row: list[str], columns: dict[str, int]) -> tuple[str, tuple | None, str]:
    """(path as written, pixel box or None, label) of a row read by the header's names."""
    def cell(role: str) -> str:
        return row[columns[role]] if columns[role] < len(row) else ""

    label = cell("label").strip() if "label" in columns else ""
    if "bbox" in columns:
        return cell("image"), _parse_box(cell("bbox")), label or "object"
    roles = [r for r in ("x1", "y1", "x2", "y2", "x", "y", "w", "h") if r in columns]
    if not any(cell(r).strip() for r in roles):
        return cell("image"), None, label or "object"  # no box: a negative
    values = []
    for role in roles:
        try:
            values.append(number(cell(role)))
        except ValueError:
            raise ValueError(f"{role} {cell(role).strip()[:40]!r} is not a number") from None
    if roles[0] == "x":  # x, y, width, height
        x, y, w, h = values
        values = [x, y, x + w, y + h]
    return cell("image"), tuple(values), label or "object"


def _csv_image(folder: Path, cell: str) -> Path:
    """The image a path cell names: as written, else without its surrounding spaces."""
    if not cell.strip():
        raise ValueError("no image path")
    path = folder / cell
    return path if os.path.lexists(path) or cell == cell.strip() else folder / cell.strip()


def _csv_rows(text: str) -> Iterator[tuple[str, list[str] | str]]:
    """(line or lines, cells or a csv error) of each row; quoted fields may hold commas
    and line breaks, so a row can span several lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    end = 0
    while True:
        start = end + 1
        try:
            row: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # a field over the csv module's 128 KiB limit
            row = f"not a CSV row ({err})"
        end = reader.line_num
        yield (str(start) if end <= start else f"{start}-{end}"), row


def csv_source(options: SourceOptions) -> FileSource:
    """`image path, "[x1, y1, x2, y2]"[, label]` rows in pixels; paths relative to the CSV.

    A header row is optional; one that names its columns (``filename,xmin,ymin,xmax,ymax,
    class``, ``image,x,y,w,h``, ...) is read by those names.
    """
    path = require_data(options.data_dir, "csv", "the labels CSV file (or its folder)")
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if len(found) != 1:
            raise ValueError(f"{path} holds {len(found)} CSV files; pass the labels CSV file itself")
        path = found[0]
    try:  # a line that is not UTF-8 is one bad row, not a bad file: surrogates mark its bytes
        data = read_annotation(path, "CSV file", MAX_FILE_BYTES)
        text = data.decode("utf-8-sig", errors="surrogateescape")
    except ValueError as err:
        raise ValueError(f"cannot read CSV {path}: {err}") from None
    entries, problems = [], []
    columns: dict[str, int] | None = None
    first = True
    for lines, row in _csv_rows(text):
        where = f"{path.name}:{lines}"
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        if not any(c.strip() for c in row):
            continue
        if first:
            first = False
            if _is_header(row) and not _SURROGATE.search("".join(row)):
                columns = _header_columns(row, path)
                continue
        at = columns["image"] if columns else 0
        cell = row[at] if at < len(row) else ""
        try:
            if _SURROGATE.search("".join(row)):
                raise ValueError("not UTF-8 text; re-save the CSV as UTF-8")
            image, box, label = _named_row(row, columns) if columns else _csv_row(row)
            box = _parse_box(box) if isinstance(box, str) else box
            _check_row(box, label)
            entries.append(Entry(_csv_image(path.parent, image), [(box, label)] if box else [], where))
        except ValueError as err:
            problems.append(f"{where}: {err}")
            if cell.strip():  # its image would lose an object: drop it too
                entries.append(Entry(_csv_image(path.parent, cell), where=where, broken=True))
    return FileSource("csv", path, entries, problems, options)


def _check_row(box: tuple | None, label: str) -> None:
    """Refuse a row whose box looks normalized or whose label is not one printable line."""
    if box is not None and all(0 <= v <= 1 for v in box):
        raise ValueError(f"box {list(box)} looks like normalized coordinates (0-1); "
                         "this CSV takes pixels (x1, y1, x2, y2)")
    if not label.isprintable():
        raise ValueError(f"label {label[:40]!r} holds a line break or control character")


# ---------------------------------------------------------------- Pascal VOC
def voc_source(options: SourceOptions) -> FileSource:
    """A VOC folder: images/ (or JPEGImages/) + annotations/*.xml, or XML next to the images."""
    root = require_data(options.data_dir, "voc", "the VOC folder (images/ and annotations/)")
    ann_dir = next((root / d for d in ("annotations", "Annotations") if (root / d).is_dir()), root)
    xmls = sorted(ann_dir.rglob("*.xml"))
    if not xmls:
        raise ValueError(f"no VOC annotation (*.xml) under {ann_dir}")
    folders = [root / d for d in ("images", "JPEGImages") if (root / d).is_dir()] + [root]
    entries, problems = [], []
    for xml_path in xmls:
        where = str(xml_path.relative_to(root))
        try:
            tree = _voc_tree(xml_path)
            image = _voc_image(tree.findtext("filename") or "", xml_path, folders)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        try:
            objects = [_voc_object(obj) for obj in tree.iter("object")]
            entries.append(Entry(image, objects, where, size=_voc_size(tree), whole=True))
        except ValueError as err:
            problems.append(f"{where}: {err}")
            entries.append(Entry(image, where=where, broken=True))  # another XML may name it
    return FileSource("voc", root, entries, problems, options)


def _voc_tree(xml_path: Path) -> ET.Element:
    """The parsed XML, namespaces stripped from the tags (``{uri}object`` -> ``object``)."""
    data = read_annotation(xml_path, "VOC annotation")
    try:
        tree = ET.fromstring(data)  # expat: no external entities, entity expansion capped
    except ET.ParseError as err:
        raise ValueError(f"malformed XML ({err})") from None
    for element in tree.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.rsplit("}", 1)[1]
    return tree


def _voc_object(obj: ET.Element) -> tuple[tuple[float, float, float, float], str]:
    name = obj.findtext("name")
    if name is None:  # was class "object": a class of its own beside the named ones
        raise ValueError("an <object> has no <name>; write its class name")
    if not name.strip():
        raise ValueError("an <object> has an empty <name>; write its class name")
    bb = obj.find("bndbox")
    if bb is None:
        raise ValueError("an <object> has no <bndbox>")
    box = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = bb.findtext(key)
        if text is None:
            raise ValueError(f"a <bndbox> has no <{key}>")
        try:
            box.append(number(text))
        except ValueError:
            raise ValueError(f"<{key}> {text.strip()[:40]!r} is not a number") from None
    return tuple(box), name.strip()  # type: ignore[return-value]


def _voc_size(tree: ET.Element) -> tuple[int, int] | None:
    """<size> width and height when both are given and above 0 (tools write 0 for unknown)."""
    width, height = (tree.findtext(f"size/{k}") or "" for k in ("width", "height"))
    if not width.strip() or not height.strip():
        return None
    try:
        size = int(number(width)), int(number(height))
    except ValueError:
        raise ValueError(f"<size> {width.strip()[:20]!r}x{height.strip()[:20]!r} is not two numbers") from None
    return size if min(size) > 0 else None


def _voc_image(filename: str, xml_path: Path, folders: list[Path]) -> Path:
    """The image an XML names: its bare <filename> next to the XML or in the image folders;
    without a <filename>, the XML's own name with an image extension."""
    if outside(filename):
        raise ValueError(f"<filename> {filename.strip()!r} points outside the dataset; "
                         "write the image's bare file name")
    # VOC's <filename> is a bare name; a folder in it is ignored
    name = filename.strip().replace("\\", "/").rsplit("/", 1)[-1]
    names = [name] if name not in ("", ".") else [xml_path.stem + ext for ext in IMAGE_EXTS]
    for folder in [xml_path.parent, *folders]:
        for candidate in names:
            if is_file(folder / candidate):
                return folder / candidate
    if name in ("", "."):
        raise ValueError(f"no <filename>, and no image named {xml_path.stem} "
                         f"({', '.join(IMAGE_EXTS)}) next to it or in images/")
    raise ValueError(f"image {name} not found next to the XML or in images/ (<filename>)")


__all__ = ["coco_source", "csv_source", "voc_source", "yolo_source"]
