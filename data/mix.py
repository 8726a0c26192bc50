"""Several data sources in one run: weighted for training, concatenated for val and test.

``--data voc:3 faces-on-scenes:1 --data-dir photos/`` trains on the user's VOC folder and
the built-in synthetic faces, three training samples from the first for one from the
second. Each source keeps its own split (file sources their seeded hold-out, synthetic
sources their held-out backgrounds), and labels are merged by name: ``none`` first, then
every object class of every source, sorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.files import warn_case
from data.sources import NO_OBJECT, Sample, Source

FILE_FORMATS = ("csv", "voc", "yolo", "coco")  # sources that read --data-dir


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``--data``: a source name, its data folder (file sources) and weight."""

    name: str
    data_dir: Path | None = None
    weight: float = 1.0

    @property
    def reads_files(self) -> bool:
        return self.name in FILE_FORMATS

    def __str__(self) -> str:
        where = f" {self.data_dir}" if self.data_dir else ""
        return f"{self.name}{where}"


def parse_specs(names: str | Sequence[str], data_dirs: str | Path | Sequence[str | Path] | None = None,
                ) -> list[SourceSpec]:
    """``--data`` items (``NAME`` or ``NAME:WEIGHT``, comma lists allowed) and ``--data-dir``
    values (given to the file sources in order) -> specs.

    A single non-file source may also take a data dir (a source a user registers may read
    a folder); ``data.catalog.parse_data`` refuses one for the built-in synthetic sources.
    """
    items = [names] if isinstance(names, str) else list(names)
    items = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not items:
        raise ValueError("no data source given; pass --data NAME (e.g. voc, cat-on-scenes)")
    dirs = [] if data_dirs is None else [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    dirs = [Path(d).expanduser() for d in dirs if str(d).strip()]
    specs = []
    for item in items:
        name, _, weight_text = item.partition(":")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"--data {item!r}: the weight after ':' must be a number") from None
        if not 0 < weight <= 1e6:  # also inf and nan; weights are only compared with each other
            raise ValueError(f"--data {item!r}: the weight must be above 0 and at most 1e6")
        specs.append(SourceSpec(name.strip(), None, weight))
    readers = [i for i, s in enumerate(specs) if s.reads_files]
    if len(specs) == 1 and dirs:
        readers = [0]
    if len(dirs) > len(readers):
        raise ValueError(f"{len(dirs)} --data-dir values for {len(readers)} file source(s) "
                         f"({', '.join(specs[i].name for i in readers) or 'none'})")
    for i, folder in zip(readers, dirs):
        specs[i] = SourceSpec(specs[i].name, folder, specs[i].weight)
    missing = [specs[i].name for i in readers if specs[i].data_dir is None]
    if missing:
        raise ValueError(f"--data {', '.join(missing)} reads files: pass one --data-dir per file "
                         "source, in the order of --data")
    return specs


class MixSource:
    """Several sources as one: labels merged by name.

    ``weighted=True`` (training): an epoch of ``size`` samples (default: the sources'
    total length) gives each source a share proportional to its weight, cycling through
    it in a seeded order. ``weighted=False`` (val, test): the sources one after another.
    """

    def __init__(self, sources: Sequence[Source], names: Sequence[str], weights: Sequence[float],
                 *, weighted: bool, seed: int = 0, size: int | None = None):
        if not sources:
            raise ValueError("a mix needs at least one source")
        self.sources, self.names = list(sources), list(names)
        self.labels = [NO_OBJECT, *sorted({lab for s in sources for lab in s.labels[1:]})]
        if weighted:  # once a run (val and test merge the same labels): "Cat", "cat" stay apart
            warn_case(self.labels[1:], "--data", " ".join(self.names))
        self._maps = [[self.labels.index(lab) if k else 0 for k, lab in enumerate(s.labels)]
                      for s in self.sources]
        lengths = [len(s) for s in self.sources]
        if weighted:
            total = int(size) if size else sum(lengths)
            w = np.asarray(weights, np.float64) / float(np.sum(weights))
            counts = np.maximum(1, np.round(w * total).astype(int))
            rng = np.random.default_rng([int(seed), 7_919])
            table = []
            for k, (count, length) in enumerate(zip(counts, lengths)):
                reps = -(-int(count) // length)  # ceil: cycle through the source in seeded orders
                order = np.concatenate([rng.permutation(length) for _ in range(reps)])[:count]
                table += [(k, int(i)) for i in order]
            self._table = table
        else:
            self._table = [(k, i) for k, length in enumerate(lengths) for i in range(length)]
        self.counts = {name: sum(1 for k, _ in self._table if k == j) for j, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, index: int) -> Sample:
        k, i = self._table[int(index)]
        sample = self.sources[k][i]
        return Sample(sample.image, sample.box, self._maps[k][int(sample.label)], sample.name)

    def part(self, index: int) -> str:
        """Name of the source sample ``index`` comes from (for per-source reports)."""
        return self.names[self._table[int(index)][0]]


__all__ = ["FILE_FORMATS", "MixSource", "SourceSpec", "parse_specs"]
