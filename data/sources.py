"""Data sources: the one interface every dataset (synthetic or on disk) implements.

A source yields ``Sample``s: an RGB uint8 image at its own size, one box normalized to
[0, 1] as x1, y1, x2, y2 (all zeros when there is no object) and an integer label index
into ``source.labels``, where ``labels[0]`` is always ``"none"`` (no object).

The registry of named sources and ``open_source``, the one way every package opens data,
live in ``data.catalog``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from runtime.contract import NO_OBJECT


@dataclass
class Sample:
    """One training example.

    Attributes:
        image: (h, w, 3) uint8 RGB, any size.
        box: (4,) float32 normalized x1, y1, x2, y2; zeros when ``label == 0``.
        label: index into the source's labels; 0 = no object.
        name: where it came from (file path or a synthetic id), for error messages.
    """

    image: np.ndarray
    box: np.ndarray
    label: int
    name: str = ""


class Source(Protocol):
    """What every data source provides."""

    labels: list[str]  # labels[0] == "none"

    def __len__(self) -> int:
        """Number of distinct samples (synthetic sources: the size of one epoch)."""

    def __getitem__(self, index: int) -> Sample:
        """The sample at ``index``; deterministic for a given source seed and index."""


@dataclass
class SourceOptions:
    """Options shared by all sources.

    Attributes:
        split: ``train``, ``val`` or ``test``; synthetic val and test splits each use their
            own backgrounds (and faces) that training never sees; file sources split by a
            seeded shuffle (``val`` and ``test`` are the same held-out part; ``all``: every image).
        data_dir: folder (or file) for file sources.
        size: number of samples for synthetic sources (file sources ignore it).
        seed: makes sample ``i`` reproducible.
        negatives: share of synthetic samples with no object (label 0); file sources take
            their negatives from the data (images annotated with no object).
        multi: what to do with images holding several boxes: ``skip`` or ``largest``.
        val_fraction: share of a file dataset held out, half for validation, half for test.
        cache_mb: file sources keep decoded images in memory up to this many MiB.
    """

    split: str = "train"
    data_dir: Path | None = None
    size: int = 1000
    seed: int = 0
    negatives: float = 0.0
    multi: str = "skip"
    val_fraction: float = 0.3  # 70 / 15 / 15
    cache_mb: float = 1024.0


def iterate(source: Source) -> Iterator[Sample]:
    for i in range(len(source)):
        yield source[i]


class ImageFolder:
    """A folder of plain images (searched recursively), no boxes: for int8 calibration."""

    labels = [NO_OBJECT, "object"]

    def __init__(self, folder: Path):
        from data.images import list_images

        self.folder = Path(folder)
        self.files = list_images(self.folder, recursive=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        from data.images import read_image

        path = self.files[index]
        return Sample(read_image(path), np.zeros(4, np.float32), 0, str(path))


__all__ = ["NO_OBJECT", "ImageFolder", "Sample", "Source", "SourceOptions", "iterate"]
