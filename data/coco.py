"""The COCO file source: one JSON file (``bbox`` = x, y, w, h pixels); images next to it or
in images/.

The file as a whole must make sense (``images``, ``annotations`` and ``categories`` lists,
one name per category id), else a ValueError names it. A bad image record or annotation
is a problem that drops its image, never the run, and never leaves it with an object
missing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from data.files import (Entry, FileSource, distinct_names, is_file, outside, read_annotation,
                        require_data)
from data.images import MAX_FILE_BYTES
from data.sources import SourceOptions


def coco_source(options: SourceOptions) -> FileSource:
    """A COCO JSON file (``bbox`` = [x, y, w, h] pixels); images next to it or in images/."""
    path = require_data(options.data_dir, "coco", "the COCO JSON file (or its folder)")
    if path.is_dir():
        found = sorted(path.glob("*.json")) or sorted((path / "annotations").glob("*.json"))
        if len(found) != 1:
            raise ValueError(f"{path} holds {len(found)} JSON files; pass the COCO JSON file itself")
        path = found[0]
    images, anns, cats = _load(path)
    folders = [path.parent, path.parent / "images"]
    if path.parent.name.lower() == "annotations":  # the dataset folder is the one above it
        folders += [path.parent.parent / "images", path.parent.parent]
    records, problems = [], []
    for img in images:
        try:
            width, height = img.get("width"), img.get("height")
            size = None if width is None and height is None else (_int(width), _int(height))
            records.append((_int(img["id"]), str(img["file_name"]), size))
        except (AttributeError, KeyError, TypeError, ValueError):
            problems.append(f"{path.name}: malformed image record {str(img)[:80]} (needs id and file_name; "
                            "width and height are whole numbers)")
    ids = Counter(image_id for image_id, _, _ in records)
    entries: dict[int, Entry] = {}
    for image_id, name, size in records:
        shown = name[:80] if name.isprintable() else repr(name[:80])  # one line in the warning
        where = f"{path.name}: image {image_id} ({shown})"
        if ids[image_id] > 1:  # which image do its annotations belong to? neither is safe
            problems.append(f"{where}: {ids[image_id]} images have id {image_id}; give each its own id")
            continue
        if outside(name):
            problems.append(f"{where}: file_name points outside the dataset; write the image's path "
                            "relative to the JSON's folder (or images/)")
            continue
        file = next((f / name for f in folders if is_file(f / name)), path.parent / name)
        size = size if size and min(size) > 0 else None  # 0: unknown, as some exporters write
        entries[image_id] = Entry(file, [], where, size=size, whole=True)
    seen = set(ids)
    crowd: set[int] = set()
    for ann in anns:
        image_id, why = _add_annotation(ann, entries, seen, cats, crowd)
        if why:
            problems.append(f"{path.name}: malformed annotation {str(ann)[:80]}: {why}")
            if image_id in entries:  # its image would lose an object: drop it too
                entries[image_id].broken = True
    for image_id in sorted(crowd):
        entry = entries.get(image_id)
        if entry is not None and not entry.objects and not entry.broken:
            problems.append(f"{entry.where}: only crowd annotations (iscrowd=1), no single object to "
                            "box; annotate one object or remove the image")
            entry.broken = True
    return FileSource("coco", path, list(entries.values()), problems, options)


def _load(path: Path) -> tuple[list, list, dict[int, str]]:
    """(images, annotations, {category id: name}) of a COCO file; ValueError naming it."""
    raw = read_annotation(path, "COCO JSON file", MAX_FILE_BYTES)  # its errors name the file
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except RecursionError:
        raise ValueError(f"{path} is not a COCO JSON file (nested too deeply to read)") from None
    except ValueError as err:  # not UTF-8, not JSON
        raise ValueError(f"{path} is not a COCO JSON file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"{path} is not a COCO JSON file (no 'images' list at the top)")
    parts = [data["images"], data.get("annotations", []), data.get("categories", [])]
    for key, value in zip(("images", "annotations", "categories"), parts):
        if not isinstance(value, list):
            raise ValueError(f"{path}: '{key}' is {type(value).__name__ if value is not None else 'null'}, "
                             "not a list; fix the file")
    cats: dict[int, str] = {}
    for cat in parts[2]:
        try:
            cat_id, name = _int(cat["id"]), cat["name"]
            if not isinstance(name, str) or not name.strip():
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: malformed category {str(cat)[:80]} (needs an id and a name)") from None
        if cats.setdefault(cat_id, name.strip()) != name.strip():
            raise ValueError(f"{path}: category id {cat_id} is named both {cats[cat_id]!r} and "
                             f"{name.strip()!r}; give each category its own id")
    used: set[int] = set()
    for ann in parts[1]:
        try:
            used.add(_int(ann["category_id"]))
        except (KeyError, TypeError, ValueError):
            pass  # a malformed annotation: reported where it is read
    distinct_names(cats, path, "categories", "give each category its own name (or move the "
                   "annotations to one id)", used=used)
    return parts[0], parts[1], cats


def _add_annotation(ann: object, entries: dict[int, Entry], seen: set[int], cats: dict[int, str],
                    crowd: set[int]) -> tuple[int | None, str | None]:
    """Add one annotation's box to its image: (image id, why it is malformed or None)."""
    if not isinstance(ann, dict):
        return None, "not an object"
    try:
        image_id = _int(ann["image_id"])
    except (KeyError, TypeError, ValueError):
        return None, "no image_id"
    if image_id not in seen:
        return image_id, f"image id {image_id} not in images"
    if image_id not in entries:
        return image_id, None  # an image skipped already (a duplicate id)
    try:
        is_crowd = _int(ann.get("iscrowd", 0) or 0)
    except (TypeError, ValueError):
        return image_id, f"iscrowd {ann.get('iscrowd')!r} is not 0 or 1"
    if is_crowd:
        crowd.add(image_id)
        return image_id, None
    if "bbox" not in ann:
        return image_id, "no bbox (segmentation only)"
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return image_id, f"bbox {str(bbox)[:40]} is not a list of 4 numbers [x, y, w, h]"
    name = "object"
    if cats:
        try:
            name = cats[_int(ann.get("category_id"))]
        except (KeyError, TypeError, ValueError):
            return image_id, f"category_id {ann.get('category_id')!r} is not among the categories"
    elif ann.get("category_id") is not None:  # no names: one class per id, as YOLO's class0
        try:
            name = f"class{_int(ann['category_id'])}"
        except (TypeError, ValueError):
            return image_id, f"category_id {ann['category_id']!r} is not a whole number"
    x, y, w, h = (float(v) for v in bbox)
    entries[image_id].objects.append(((x, y, x + w, y + h), name))
    return image_id, None


def _int(value: object) -> int:
    """A whole number: an int, a float like 3.0 or a digit string like "3" ("0" is 0)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an id")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"{value!r} is not a whole number")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
