"""The registry of data sources and ``open_source``, the one way every package opens data.

``SOURCES`` maps a name to a factory taking ``SourceOptions``: the four synthetic sources
built from assets that ship with installed packages, and the four annotation formats of
file datasets. Add an entry and it shows up in ``python -m train --help`` and in every
error that lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data import formats, synthetic
from data.mix import MixSource, SourceSpec, parse_specs
from data.paste import PasteOptions, PasteSource, paste_options
from data.sources import ImageFolder, Source, SourceOptions

SourceFactory = Callable[[SourceOptions], Source]
SOURCES: dict[str, SourceFactory] = {
    "blobs": synthetic.Blobs,
    "cat-on-black": synthetic.CatOnBlack,
    "cat-on-scenes": synthetic.CatOnScenes,
    "faces-on-scenes": synthetic.FacesOnScenes,
    "cat-cutouts": synthetic.cat_cutouts,
    "cat-figures": synthetic.CatFigures,
    "csv": formats.csv_source,
    "voc": formats.voc_source,
    "yolo": formats.yolo_source,
    "coco": formats.coco_source,
}


def register(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Decorator: add a source factory to the registry under ``name``."""

    def deco(factory: SourceFactory) -> SourceFactory:
        SOURCES[name] = factory
        return factory

    return deco


def get_source(name: str, **options: object) -> Source:
    """Build the source registered as ``name``; unknown names list the valid ones."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; valid: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](SourceOptions(**options))  # type: ignore[arg-type]


def open_source(
    spec: str | Sequence[str],
    *,
    split: str = "train",
    data_dir: str | Path | Sequence[str | Path] | None = None,
    paste: Any = None,
    folders: bool = False,
    **options: Any,
) -> Source:
    """Open data by name: the one way every package gets samples.

    Args:
        spec: a registered source (``voc``, ``cat-on-scenes``, ...), several of them
            (``["voc:3", "faces-on-scenes:1"]`` or ``"voc:3,faces-on-scenes:1"``: mixed by
            weight for training, one after another for val/test; labels merged by name), or
            with ``folders=True`` a folder of plain images (no boxes: calibration only).
        split: ``train``, ``val``, ``test`` (file sources also ``all``).
        data_dir: the data folder or file of each file source, in order.
        paste: ``data.paste.PasteOptions`` (or a dict of them): on the train split, file
            sources are wrapped in the object-bank paste augmentation; ignored otherwise.
        options: ``SourceOptions`` fields (size, seed, negatives, multi, val_fraction, ...).
    """
    names = [spec] if isinstance(spec, str) else list(spec)
    if folders and len(names) == 1 and ":" not in names[0] and "," not in names[0]:
        folder = Path(names[0]).expanduser()
        if names[0] not in SOURCES and folder.is_dir():
            return ImageFolder(folder)
    specs = parse_data(names, data_dir)
    if not isinstance(paste, PasteOptions):
        paste = paste_options(paste) if paste else None
    sources = [get_source(s.name, **{**options, "split": split, "data_dir": s.data_dir})
               for s in specs]
    _check_disjoint(specs, sources)
    for k, s in enumerate(specs):
        if paste is not None and paste.p > 0 and split == "train" and s.reads_files:
            size = options.get("size")
            sources[k] = PasteSource(sources[k], paste, seed=int(options.get("seed", 0)), size=size)
    if len(sources) == 1:
        return sources[0]
    return MixSource(sources, [str(s) for s in specs], [s.weight for s in specs],
                     weighted=split == "train", seed=int(options.get("seed", 0)))


def reads_folder(name: str) -> bool:
    """Whether source ``name`` may read a data folder: every source but the built-in
    synthetic ones (a source a user registers may read a folder of its own)."""
    return getattr(SOURCES.get(name), "__module__", None) != synthetic.__name__


def parse_data(spec: str | Sequence[str], data_dir: str | Path | Sequence[str | Path] | None = None,
               ) -> list[SourceSpec]:
    """``data.mix.parse_specs``, refusing a data folder given to a built-in synthetic source:
    it reads none, and a run on the built-in data would look like a run on the folder."""
    specs = parse_specs(spec, data_dir)
    for s in specs:
        if s.data_dir is not None and not reads_folder(s.name):
            raise ValueError(f"--data {s.name} is built in and reads no --data-dir (got "
                             f"{s.data_dir}); drop --data-dir, or name the folder's format "
                             "(csv, voc, yolo, coco) in --data")
    return specs


def _check_disjoint(specs: Sequence[Any], sources: Sequence[Source]) -> None:
    """Refuse file sources that share images: each splits its own images, so a shared one
    could be trained on through one source and tested on through the other."""
    for a in range(len(sources)):
        for b in range(a + 1, len(sources)):
            none: frozenset[str] = frozenset()
            shared = getattr(sources[a], "images", none) & getattr(sources[b], "images", none)
            if shared:
                raise ValueError(f"--data {specs[a]} and {specs[b]} share {len(shared)} image(s) "
                                 f"(e.g. {min(shared)}): each source splits its own images, so "
                                 "one could be trained on and tested on; give each source its "
                                 "own images")


__all__ = ["SOURCES", "SourceFactory", "get_source", "open_source", "parse_data", "reads_folder",
           "register"]
