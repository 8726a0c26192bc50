"""The data of one split of a run: one source, a weighted mix, or pasted objects for training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.config import RunConfig


def split_source(config: RunConfig, split: str) -> Any:
    """The data of ``split`` for this config (a mix for several sources, pasted objects on the
    train split of file sources when ``data.paste`` > 0); empty sources are a ValueError."""
    from data.catalog import open_source

    d = config.data
    size = {"train": d.train_size, "val": d.val_size, "test": d.test_size}[split]
    dirs = d.data_dirs
    for folder in dirs:
        if not Path(folder).expanduser().exists():
            raise FileNotFoundError(f"data dir {folder} does not exist; pass --data-dir PATH")
    paste = {"p": d.paste, **d.paste_options} if d.paste else None
    source = open_source(d.source, split=split, data_dir=dirs or None, paste=paste, size=size,
                         seed=d.seed, negatives=d.negatives, multi=d.multi,
                         val_fraction=d.val_fraction)
    if len(source) == 0:
        raise ValueError(f"the {split} split of {d.describe()} is empty; check --data-dir "
                         "and the annotation files")
    return source


__all__ = ["split_source"]
