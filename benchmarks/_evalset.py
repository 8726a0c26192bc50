"""The images every cell is scored on, built once per run and shared with the cell processes.

Two ways in:
- a registered training source (``train.sources.get_source``: synthetic scenes, or a CSV /
  VOC folder split exactly as training split it); needs the training extras;
- a CSV or VOC folder read by the lean reader below (numpy + OpenCV only), used whole:
  this works on a Raspberry Pi with only ``.[runtime]`` installed.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class EvalSet:
    """Images (RGB uint8, own sizes) with one normalized xyxy box and a label name each.

    Attributes:
        name: where the images came from (for the results file).
        images: list of (h, w, 3) uint8 RGB arrays.
        boxes: (N, 4) float32 normalized x1, y1, x2, y2 (zeros for no object).
        labels: label name per image ("none" = no object).
    """

    name: str
    images: list[np.ndarray] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: str | Path) -> None:
        """Store as .npz (no pickle) for the cell processes."""
        arrays = {f"img{i}": im for i, im in enumerate(self.images)}
        meta = json.dumps({"name": self.name, "labels": self.labels})
        np.savez(path, boxes=self.boxes, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> EvalSet:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            n = len(meta["labels"])
            images = [data[f"img{i}"] for i in range(n)]
            return cls(meta["name"], images, data["boxes"], meta["labels"])


def read_image(path: Path) -> np.ndarray:
    """Decode by content (some '.jpg' files are PNG or GIF), return RGB uint8."""
    buf = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:  # GIF and other container formats OpenCV decodes as video
        cap = cv2.VideoCapture(str(path))
        ok, image = cap.read()
        cap.release()
        if not ok:
            raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _norm(box: list[float], image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    return np.clip(np.array([x1 / w, y1 / h, x2 / w, y2 / h], np.float32), 0.0, 1.0)


def _voc_dirs(root: Path) -> tuple[Path, Path] | None:
    for ann, img in (("annotations", "images"), ("Annotations", "JPEGImages")):
        if (root / ann).is_dir():
            return root / ann, root / img if (root / img).is_dir() else root
    return None


def _read_voc(root: Path, limit: int | None) -> EvalSet:
    ann_dir, img_dir = _voc_dirs(root)  # type: ignore[misc]
    out = EvalSet(f"voc:{root}")
    boxes = []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        tree = ET.parse(xml_path).getroot()
        objects = []
        for obj in tree.iter("object"):
            bb = obj.find("bndbox")
            if bb is None:
                continue
            coords = [float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")]
            objects.append((obj.findtext("name", "object"), coords))
        if not objects:
            continue
        name, coords = max(objects, key=lambda o: (o[1][2] - o[1][0]) * (o[1][3] - o[1][1]))
        image_path = img_dir / (tree.findtext("filename") or xml_path.stem + ".jpg")
        if not image_path.is_file():
            matches = [
                p for p in img_dir.glob(xml_path.stem + ".*") if p.suffix.lower() in IMAGE_SUFFIXES
            ]
            if not matches:
                log.warning("no image for %s; skipped", xml_path.name)
                continue
            image_path = matches[0]
        image = read_image(image_path)
        out.images.append(image)
        boxes.append(_norm(coords, image))
        out.labels.append(name)
        if limit and len(out) >= limit:
            break
    out.boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return out


def _read_csv(csv_path: Path, limit: int | None) -> EvalSet:
    out = EvalSet(f"csv:{csv_path}")
    boxes = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            cols = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            path = cols.get("image") or cols.get("path") or cols.get("filename")
            numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", cols.get("bbox", ""))]
            if not path or len(numbers) != 4:
                continue
            image = read_image(csv_path.parent / path)
            out.images.append(image)
            boxes.append(_norm(numbers, image))
            out.labels.append(cols.get("label") or "object")
            if limit and len(out) >= limit:
                break
    out.boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return out


def detect_format(path: Path) -> str | None:
    """``voc`` or ``csv`` for a dataset folder (or CSV file), None if neither."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return "csv"
    if path.is_dir():
        if _voc_dirs(path):
            return "voc"
        if list(path.glob("*.csv")):
            return "csv"
    return None


def read_folder(path: str | Path, limit: int | None = None) -> EvalSet:
    """Read a whole CSV (``image,bbox,label`` with pixel ``[x1, y1, x2, y2]``) or VOC folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"eval data {path} not found; pass --eval-dir with a CSV or VOC folder"
        )
    fmt = detect_format(path)
    if fmt == "voc":
        data = _read_voc(path, limit)
    elif fmt == "csv":
        csv_path = (
            path
            if path.is_file()
            else (
                path / "labels.csv"
                if (path / "labels.csv").is_file()
                else sorted(path.glob("*.csv"))[0]
            )
        )
        data = _read_csv(csv_path, limit)
    else:
        raise ValueError(
            f"{path} is neither a VOC folder (annotations/*.xml + images/) nor a CSV set "
            "(labels.csv with image,bbox,label); pass one of those to --eval-dir"
        )
    if not len(data):
        raise ValueError(f"no usable annotated images in {path}")
    return data


def from_source(
    name: str, *, data_dir: str | None, split: str, size: int, seed: int = 0
) -> EvalSet:
    """Draw an eval set from a registered training source (needs the training extras)."""
    from train.sources import get_source  # noqa: PLC0415  (optional dependency)

    opts: dict[str, Any] = {"split": split, "size": size, "seed": seed}
    if data_dir:
        opts["data_dir"] = Path(data_dir).expanduser()
    source = get_source(name, **opts)
    n = min(len(source), size)
    out = EvalSet(f"{name}:{split}" + (f":{data_dir}" if data_dir else ""))
    boxes = []
    for i in range(n):
        sample = source[i]
        out.images.append(np.ascontiguousarray(sample.image))
        boxes.append(np.asarray(sample.box, np.float32))
        out.labels.append(source.labels[int(sample.label)])
    out.boxes = np.array(boxes, np.float32).reshape(-1, 4)
    if not len(out):
        raise ValueError(f"eval source {name!r} has no samples for split {split!r}")
    return out


def default_source(
    labels: list[str] | None, run_config: dict[str, Any] | None
) -> tuple[str, str | None] | None:
    """(source, data_dir) to score on when none is given: the run's own data, or by label."""
    if run_config and run_config.get("data", {}).get("source"):
        data = run_config["data"]
        return data["source"], data.get("data_dir")
    text = " ".join(labels or []).lower()
    if "cat" in text:
        return "cat-on-scenes", None
    if any(word in text for word in ("face", "mask", "selfie", "person")):
        return "faces-on-scenes", None
    return None
