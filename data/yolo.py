"""The YOLO file source: images/ + labels/*.txt (``class cx cy w h``, normalized).

Class names come from classes.txt (one a line) or data.yaml's ``names``. No YAML library is
installed (the data layer stays lean), so ``yaml_names`` reads the forms YOLO tools write
(flow lists and mappings, also across lines, block lists and ``0: a`` blocks) and refuses
anything else with a ValueError naming the file: names read half right would put the
wrong name on every box.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from data.files import Entry, FileSource, distinct_names, number, read_text, require_data
from data.images import IMAGE_EXTS, list_images
from data.sources import SourceOptions


def yolo_source(options: SourceOptions) -> FileSource:
    """images/ + labels/*.txt (`class cx cy w h`, normalized); names from classes.txt or data.yaml.

    An image whose label file is empty or missing is a negative (YOLO's convention); a
    label path that is not a regular file (a folder, a FIFO, a dangling link) is a problem.
    """
    root = require_data(options.data_dir, "yolo", "the YOLO folder (images/ and labels/)")
    names, names_file = _yolo_names(root)
    images = list_images(root / "images" if (root / "images").is_dir() else root, recursive=True)
    if not images:
        raise ValueError(f"no images under {root}")
    entries, problems = [], []
    uses = Counter(_yolo_label_path(root, image) for image in images)
    listings: dict[Path, dict[str, str]] = {}  # folder -> lower-case name -> name
    renamed: set[Path] = set()  # label files named in another case, reported as such
    for image in images:
        txt = _yolo_label_path(root, image)
        where = str(txt.relative_to(root)) if txt.is_relative_to(root) else str(txt)
        if uses[txt] > 1 and os.path.lexists(txt):  # a.jpg and a.png: whose boxes are these?
            problems.append(f"{where}: {image.relative_to(root)} shares this label file with another "
                            f"image named {image.stem}.*; give each image its own name and label file")
            continue
        odd = None if os.path.lexists(txt) else _other_case(txt, listings)
        if odd is not None and odd not in uses:  # labels/a.TXT: not found on Linux, so a.jpg
            renamed.add(odd)                     # became a negative
            problems.append(f"{odd.relative_to(root) if odd.is_relative_to(root) else odd}: its name "
                            f"differs in case from {txt.name}, the label file of "
                            f"{image.relative_to(root)}; rename it (the image is skipped until then)")
            continue
        try:
            lines = read_text(txt, "YOLO label file").splitlines() if os.path.lexists(txt) else []
            objects = [_yolo_object(line, names, names_file) for line in lines if line.strip()]
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        entries.append(Entry(image, objects, where, normalized=True, whole=True))
    if not any(_yolo_label_path(root, e.path).is_file() for e in entries) and not problems:
        raise ValueError(f"no YOLO label file (labels/NAME.txt) for any image under {root}")
    problems += _orphans(root, set(uses) | renamed)
    return FileSource("yolo", root, entries, problems, options)


def _orphans(root: Path, used: set[Path]) -> list[str]:
    """Problems for the label files under a ``labels`` folder that no image uses: their
    objects would be lost without a word (an image renamed, deleted or of another type)."""
    top = root / "labels" if (root / "images").is_dir() else root
    found = sorted(t for t in top.rglob("*.txt") if t not in used and t.name != "classes.txt"
                   and "labels" in t.relative_to(root).parts[:-1])
    return [f"{t.relative_to(root)}: no image named {t.stem} ({', '.join(IMAGE_EXTS[:3])}, ...) for this "
            "label file; add the image or remove the label" for t in found]


def _other_case(txt: Path, listings: dict[Path, dict[str, str]]) -> Path | None:
    """The file beside ``txt`` whose name differs from it in case only (``a.TXT``), if any."""
    folder = txt.parent
    if folder not in listings:
        try:
            listings[folder] = {n.lower(): n for n in os.listdir(folder)}
        except OSError:
            listings[folder] = {}
    name = listings[folder].get(txt.name.lower())
    return folder / name if name is not None and name != txt.name else None


def _yolo_label_path(root: Path, image: Path) -> Path:
    parts = list(image.relative_to(root).parts)
    if "images" in parts:  # images/train/a.jpg -> labels/train/a.txt
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
        return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_object(line: str, names: dict[int, str], names_file: str
                 ) -> tuple[tuple[float, float, float, float], str]:
    fields = line.split()
    try:
        if not re.fullmatch(r"[-+]?\d+", fields[0]):
            raise ValueError
        cls, values = int(fields[0]), [number(v) for v in fields[1:]]
    except (ValueError, IndexError):
        raise ValueError(f"line {line.strip()[:60]!r} is not 'class cx cy w h'") from None
    if cls < 0:
        raise ValueError(f"class {cls} is negative; class ids count from 0")
    if names and cls not in names:
        raise ValueError(f"class {cls} is outside the {len(names)} classes {names_file} gives (ids "
                         f"{min(names)}-{max(names)}); fix the label, or add the class there")
    if any(abs(v) > 2 for v in values):  # a box sticking out by more than a whole image
        raise ValueError(f"line {line.strip()[:60]!r} has values above 1: YOLO boxes are fractions of "
                         "the image size (0-1), not pixels; divide by the image's width and height")
    if len(values) == 4:
        cx, cy, w, h = values
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    elif len(values) >= 6 and len(values) % 2 == 0:  # a segmentation polygon: its bounds
        xs, ys = values[0::2], values[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
    else:
        raise ValueError(f"line {line.strip()[:60]!r} is not 'class cx cy w h'")
    return box, names.get(cls, f"class{cls}")


def _yolo_names(root: Path) -> tuple[dict[int, str], str]:
    """(class names, the file they came from): classes.txt, else data.yaml's ``names``.

    A names file that cannot be read is a ValueError naming it: every label depends on it.
    """
    for txt in (root / "classes.txt", root / "labels" / "classes.txt"):
        if os.path.lexists(txt):
            lines = read_text(txt, "YOLO classes file").splitlines()
            return _distinct({i: n.strip() for i, n in enumerate(lines) if n.strip()}, txt), txt.name
    for yaml in (root / "data.yaml", root / "dataset.yaml"):
        if os.path.lexists(yaml):
            return _distinct(yaml_names(read_text(yaml, "YOLO data file"), yaml), yaml), yaml.name
    return {}, ""


def _distinct(names: dict[int, str], path: Path) -> dict[int, str]:
    distinct_names(names, path, "classes", "give each class its own name (or relabel one id as "
                   "the other)")
    return names


def yaml_names(text: str, path: Path | str = "data.yaml") -> dict[int, str]:
    """The ``names`` of a YOLO data.yaml, checked against ``nc`` when it is given.

    Reads ``names: [a, "b, c"]`` and ``names: {0: a, 1: b}`` (also across lines), ``- a``
    lines and ``0: a`` lines; anything else is a ValueError naming ``path``.
    """
    lines = text.splitlines()
    try:
        keys = [i for i, line in enumerate(lines) if re.match(r"""["']?names["']?\s*:(\s|$)""", line)]
        if len(keys) > 1:
            raise ValueError("'names' is given twice")
        nc = _yaml_nc(lines)
        if not keys:  # ids only: nc still bounds them (class7 of nc: 2 is a typo, not a class)
            return {i: f"class{i}" for i in range(nc or 0)}
        head = lines[keys[0]].split(":", 1)[1].strip()
        body = lines[keys[0] + 1 :]
        if head.startswith(("[", "{")):
            names = _flow("\n".join([head, *body]))
        elif head and not head.startswith("#"):
            raise ValueError(f"'names: {head[:40]}' is not a list or a mapping")
        else:  # a block, or a flow collection starting on the next line
            first = next((n for n, line in enumerate(body) if line.strip() and line.strip()[0] != "#"), None)
            if first is not None and body[first][:1].isspace() and body[first].strip()[0] in "[{":
                names = _flow("\n".join(body[first:]).strip())
            else:
                names = _block(body)
        if not names:
            raise ValueError("'names' is empty")
    except ValueError as err:
        raise ValueError(f"cannot read the class names of {path}: {err} "
                         "(write them as names: [cat, dog] or one '- name' a line)") from None
    if nc is not None and nc != len(names):
        raise ValueError(f"{path}: nc is {nc} but names lists {len(names)}; make them agree")
    return names


def _yaml_nc(lines: list[str]) -> int | None:
    for line in lines:
        if m := re.match(r"""["']?nc["']?\s*:(.*)""", line):
            value = m[1].split("#", 1)[0].strip()
            if not value.isdigit():
                raise ValueError(f"nc {value[:20]!r} is not a number")
            return int(value)
    return None


def _flow(text: str) -> dict[int, str]:
    """A flow list ``[a, 'b, c']`` or mapping ``{0: a}`` opening ``text`` (it may span lines)."""
    close = "]" if text[0] == "[" else "}"
    items, item, quote, i = [], "", "", 1
    while i < len(text):
        c = text[i]
        if quote:
            item += c
            if c == "\\" and quote == '"':
                item, i = item + text[i + 1 : i + 2], i + 1
            elif c == quote == "'" and text[i + 1 : i + 2] == "'":  # '' inside '...'
                item, i = item + "'", i + 1
            elif c == quote:
                quote = ""
        elif c in "'\"" and (not item.strip() or item.rstrip().endswith(":")):
            quote, item = c, item + c
        elif c == "#" and text[i - 1].isspace():  # a comment, to the end of its line
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif c == close:
            tail = text[i + 1 :].split("\n", 1)[0].strip()
            if tail and not tail.startswith("#"):
                raise ValueError(f"unexpected {tail[:20]!r} after the closing {close!r}")
            items.append(item)
            return _flow_items(items, mapping=close == "}")
        elif c in "[]{}":
            raise ValueError(f"unexpected {c!r} inside names (nested lists are not names)")
        elif c == ",":
            items, item = [*items, item], ""
        else:
            item += c
        i += 1
    raise ValueError(f"names has no closing {close!r}")


def _flow_items(items: list[str], mapping: bool) -> dict[int, str]:
    if items and not items[-1].strip():
        items = items[:-1]  # a trailing comma
    if any(not item.strip() for item in items):
        raise ValueError("names holds an empty item (two commas in a row?)")
    if not mapping:
        return {i: _scalar(item) for i, item in enumerate(items)}
    return _pairs(items)


def _block(lines: list[str]) -> dict[int, str]:
    """``- a`` items or ``0: a`` pairs on the lines after ``names:``, up to the next key."""
    items, pairs = [], []
    for line in lines:
        if not line.strip() or line.strip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            break  # the next top-level key
        item = line.strip()
        if item == "-" or item.startswith("- "):
            items.append(item)
        elif re.match(r"""(['"]?)\d+\1\s*:""", item):
            pairs.append(item)
        else:
            raise ValueError(f"cannot read the line {item[:40]!r} (neither '- name' nor 'N: name')")
    if items and pairs:
        raise ValueError("names mixes '- name' and 'N: name' lines")
    return {i: _scalar(item[1:]) for i, item in enumerate(items)} if items else _pairs(pairs)


def _pairs(items: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    for item in items:
        m = re.fullmatch(r"""\s*(['"]?)(\d+)\1\s*:(\s.*|)""", item, re.DOTALL)
        if not m:
            raise ValueError(f"{item.strip()[:40]!r} is not 'N: name'")
        if int(m[2]) in names:
            raise ValueError(f"class {m[2]} is named twice")
        names[int(m[2])] = _scalar(m[3])
    return names


def _scalar(text: str) -> str:
    """One name: plain, 'single' or "double" quoted; a trailing comment is dropped."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        q = text[0]
        pattern = r'"((?:[^"\\]|\\.)*)"' if q == '"' else r"'((?:[^']|'')*)'"
        m = re.fullmatch(pattern + r"\s*(?:#.*)?", text, re.DOTALL)
        try:
            name = json.loads(f'"{m[1]}"') if q == '"' else m[1].replace("''", "'")  # type: ignore[index]
        except (TypeError, ValueError):
            raise ValueError(f"cannot read the quoted name {text[:40]!r}") from None
    else:
        name = re.split(r"\s#", text, maxsplit=1)[0].strip()
        if not name or "\n" in name or name[0] in "[]{}&*!|>%@`,#" or re.search(r"^[-?:](\s|$)|:(\s|$)", name):
            raise ValueError(f"cannot read the name {text[:40]!r}")
    if not name.strip():
        raise ValueError("a name is empty")
    return name
