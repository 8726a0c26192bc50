"""Hostile datasets, round 2: the same picture under several names (leaking between splits)
and mixed sources that share images or spell one class two ways."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from data.catalog import open_source
from tests.conftest import draw_box_image

H, W = 60, 80


def distinct_images(folder: Path, write_image: Callable[..., Path], n: int) -> list[str]:
    """``n`` different pictures (the box moves), each a PNG in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_image(folder / f"a{i}.png", draw_box_image(H, W, (5 + i, 4, 40 + i, 30))).name
            for i in range(n)]


def split_names(spec: str | list[str], data_dir: str | list[str], split: str) -> set[str]:
    src = open_source(spec, split=split, data_dir=data_dir, val_fraction=0.5)
    return {os.path.realpath(src[i].name) for i in range(len(src))}


def test_hard_links_share_a_split_and_copies_are_warned(tmp_path: Path, write_image: Callable[..., Path],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    names = distinct_images(tmp_path, write_image, 8)
    rows = []
    for i, name in enumerate(names):
        os.link(tmp_path / name, tmp_path / f"h{i}.png")
        box = f'"[{5 + i}, 4, {40 + i}, 30]",cat'
        rows += [f"{name},{box}", f"h{i}.png,{box}"]
    shutil.copy(tmp_path / names[0], tmp_path / "copy.png")
    rows.append('copy.png,"[5, 4, 40, 30]",cat')
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = str(tmp_path / "labels.csv")
    with caplog.at_level(logging.WARNING):
        train, test, val = (split_names("csv", data, s) for s in ("train", "test", "val"))
    stems = [{Path(p).name[1:] for p in part if "copy" not in p} for part in (train, test, val)]
    assert not stems[0] & stems[1] and not stems[0] & stems[2]  # a hard link never crosses the split
    assert len(train) + len(test | val) == 17  # every file is still a sample
    assert "1 images are byte-identical copies of others" in caplog.text


def test_sources_sharing_images_are_refused(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    names = distinct_images(tmp_path / "images", write_image, 6)
    (tmp_path / "a.csv").write_text("".join(f'images/{n},"[5, 4, 40, 30]",cat\n' for n in names))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b.csv").write_text("".join(f'../images/{n},"[5, 4, 40, 30]",cat\n' for n in names[2:]))
    with pytest.raises(ValueError, match="share 4 image"):
        open_source(["csv", "csv"], split="train", data_dir=[tmp_path / "a.csv", tmp_path / "b" / "b.csv"])


def test_mixed_labels_differing_in_case_are_warned(tmp_path: Path, write_image: Callable[..., Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    names = distinct_images(tmp_path / "one", write_image, 4)
    (tmp_path / "one" / "l.csv").write_text("".join(f'{n},"[5, 4, 40, 30]",cat\n' for n in names))
    names = distinct_images(tmp_path / "two", write_image, 4)
    (tmp_path / "two" / "l.csv").write_text("".join(f'{n},"[5, 4, 40, 30]",Cat\n' for n in names))
    with caplog.at_level(logging.WARNING):
        src = open_source(["csv", "csv"], split="train", data_dir=[tmp_path / "one" / "l.csv",
                                                                   tmp_path / "two" / "l.csv"])
    assert src.labels == ["none", "Cat", "cat"]
    assert "'Cat' and 'cat' differ only in case" in caplog.text
