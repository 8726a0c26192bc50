"""The images every cell is scored on, built once per run and shared with the cell processes.

Two ways in, both through the lean data layer (``data``: numpy, OpenCV and Pillow), so they
work on a Raspberry Pi with only ``.[runtime]`` installed:
- a registered source (synthetic scenes, or a CSV / VOC folder split exactly as training
  split it);
- a CSV or VOC folder used whole (every image the training reader accepts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.catalog import open_source

log = logging.getLogger(__name__)


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


def _voc_dirs(root: Path) -> tuple[Path, Path] | None:
    for ann, img in (("annotations", "images"), ("Annotations", "JPEGImages")):
        if (root / ann).is_dir():
            return root / ann, root / img if (root / img).is_dir() else root
    return None


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
    if fmt is None:
        raise ValueError(
            f"{path} is neither a VOC folder (annotations/*.xml + images/) nor a CSV set "
            "(labels.csv with image,bbox,label); pass one of those to --eval-dir"
        )
    data = _materialize(open_source(fmt, data_dir=path, split="all"), f"{fmt}:{path}", limit)
    if not len(data):
        raise ValueError(f"no usable annotated images in {path}")
    return data


def from_source(
    name: str, *, data_dir: str | None, split: str, size: int, seed: int = 0
) -> EvalSet:
    """Draw an eval set from a registered source, split exactly as training split it."""
    opts: dict[str, Any] = {"split": split, "size": size, "seed": seed}
    source = open_source(name, data_dir=Path(data_dir).expanduser() if data_dir else None, **opts)
    out = _materialize(source, f"{name}:{split}" + (f":{data_dir}" if data_dir else ""), size)
    if not len(out):
        raise ValueError(f"eval source {name!r} has no samples for split {split!r}")
    return out


def _materialize(source: Any, name: str, limit: int | None) -> EvalSet:
    n = len(source) if not limit else min(len(source), limit)
    out = EvalSet(name)
    boxes = []
    for i in range(n):
        sample = source[i]
        out.images.append(np.ascontiguousarray(sample.image))
        boxes.append(np.asarray(sample.box, np.float32))
        out.labels.append(source.labels[int(sample.label)])
    out.boxes = np.array(boxes, np.float32).reshape(-1, 4)
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
