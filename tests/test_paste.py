"""Object-bank paste augmentation and mixed sources: boxes stay on their objects, only the
training split is ever read, negatives come out, and labels merge by name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from data.catalog import open_source, parse_data, register
from data.mix import MixSource, parse_specs
from data.paste import PasteOptions, PasteSource

GREEN = (0, 255, 0)


def green_dataset(root: Path, write_image: Callable[..., Path], n: int = 20) -> Path:
    """n black photos, each with one pure green rectangle (the object), as a selfie CSV."""
    rng = np.random.default_rng(3)
    rows = ["image,bbox,label"]
    for i in range(n):
        h, w = 120, 160
        bw, bh = int(rng.integers(20, 70)), int(rng.integers(20, 60))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image = np.zeros((h, w, 3), np.uint8)
        image[y : y + bh, x : x + bw] = GREEN
        write_image(root / "images" / f"{i:02d}.png", image)
        rows.append(f'images/{i:02d}.png,"[{x}, {y}, {x + bw}, {y + bh}]",{"leaf" if i % 2 else "frog"}')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def green(image: np.ndarray) -> np.ndarray:
    return (image[..., 1] > 200) & (image[..., 0] < 60) & (image[..., 2] < 60)


def test_pasted_box_frames_the_pasted_object(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    csv = green_dataset(tmp_path, write_image)
    base = open_source("csv", data_dir=csv, split="train")
    opts = PasteOptions(p=1.0, negatives=0.0, object_color=0.0, margin=(0.3, 0.3),
                        blends=(1.0, 1.0, 0.0), scale=(0.2, 0.9), outside=0.3)
    paste = PasteSource(base, opts, seed=1, size=120)
    checked = 0
    for i in range(len(paste)):
        sample = paste[i]
        assert sample.name.startswith("paste:") and sample.label in (1, 2)
        h, w = sample.image.shape[:2]
        x1, y1, x2, y2 = np.round(sample.box * (w, h, w, h)).astype(int)
        mask = green(sample.image)
        inside = mask[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]  # resizing blurs the outermost pixel
        # The object fills its box ...
        assert inside.mean() > 0.9, (i, inside.mean(), inside.shape)
        # ... and nothing green lies outside it.
        outside = mask.copy()
        outside[max(0, y1 - 2) : y2 + 2, max(0, x1 - 2) : x2 + 2] = False
        assert outside.sum() == 0, i
        checked += 1
    assert checked == 120


def test_paste_reads_only_training_images_and_makes_negatives(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    csv = green_dataset(tmp_path, write_image)
    train = open_source("csv", data_dir=csv, split="train")
    held = {s.name for split in ("val", "test")
            for src in [open_source("csv", data_dir=csv, split=split)] for s in map(src.__getitem__, range(len(src)))}
    source = open_source("csv", data_dir=csv, split="train", size=300,
                         paste={"p": 0.7, "negatives": 0.3, "scenes": 0.5})
    assert isinstance(source, PasteSource) and len(source) == 300
    names, negatives = [], 0
    for i in range(len(source)):
        sample = source[i]
        names.append(sample.name)
        if sample.label == 0:
            negatives += 1
            assert not sample.box.any() and green(sample.image).sum() == 0  # the object is gone
    used = {part for n in names for part in n.removeprefix("paste:").split("@")}
    assert not used & held  # no validation or test image, as object or background
    assert any(n.startswith("paste:") for n in names) and any(not n.startswith("paste:") for n in names)
    assert negatives > 20
    assert any("@scene:" in n for n in names) and any("@/" in n for n in names)
    # Deterministic: sample i is a function of (seed, i).
    again = open_source("csv", data_dir=csv, split="train", size=300,
                        paste={"p": 0.7, "negatives": 0.3, "scenes": 0.5})
    np.testing.assert_array_equal(again[17].image, source[17].image)
    # The held-out splits are never pasted.
    assert not isinstance(open_source("csv", data_dir=csv, split="val", paste={"p": 1.0}), PasteSource)
    assert len(train) == 14


def test_paste_options_are_checked() -> None:
    with pytest.raises(ValueError, match="paste p must be a share"):
        PasteOptions(p=1.5)
    with pytest.raises(ValueError, match="scale"):
        PasteOptions(scale=(0.5, 0.2))


def test_mixed_sources_merge_labels_by_name_and_follow_weights(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    csv = green_dataset(tmp_path, write_image)
    mix = open_source(["csv:3", "blobs:1"], data_dir=[csv], split="train", size=40)
    assert isinstance(mix, MixSource)
    assert mix.labels == ["none", "blob", "frog", "leaf"]
    parts = [mix.part(i) for i in range(len(mix))]
    share = parts.count(parts[0]) / len(parts)
    assert parts[0].startswith("csv") and 0.7 < share < 0.8  # 3 : 1
    for i in range(len(mix)):
        sample = mix[i]
        name = mix.labels[sample.label]
        if mix.part(i) == "blobs":
            assert name == "blob"
        else:  # image NN.png is a leaf when NN is odd, else a frog (see green_dataset)
            assert name == ("leaf" if int(Path(sample.name).stem) % 2 else "frog")
    test = open_source("csv,blobs", data_dir=csv, split="test", size=10)
    assert len(test) == 3 + 10  # held-out splits: every sample of each source, once


def test_source_specs_pair_folders_with_file_sources() -> None:
    specs = parse_specs(["voc:2", "faces-on-scenes", "csv:0.5"], ["a", "b.csv"])
    assert [(s.name, str(s.data_dir), s.weight) for s in specs] == [
        ("voc", "a", 2.0), ("faces-on-scenes", "None", 1.0), ("csv", "b.csv", 0.5)]
    with pytest.raises(ValueError, match="one --data-dir per file source"):
        parse_specs(["voc", "csv"], ["a"])
    with pytest.raises(ValueError, match="weight"):
        parse_specs(["voc:heavy"], ["a"])
    with pytest.raises(ValueError, match="2 --data-dir values for 1 file source"):
        parse_specs(["voc", "blobs"], ["a", "b"])


def test_a_data_folder_given_to_a_built_in_source_is_refused(tmp_path, monkeypatch) -> None:
    # It was ignored: a run on the built-in cats looked like a run on the user's folder.
    for source in ("cat-on-scenes", "blobs", "cat-cutouts"):
        with pytest.raises(ValueError, match=f"--data {source} is built in and reads no --data-dir"):
            open_source(source, data_dir=str(tmp_path), size=2)
    assert len(open_source("blobs", size=2)) == 2
    # A source a user registers may read a folder of its own.
    import data.catalog

    # The registry itself, not a copy (export.calib holds the same dict by name); the entry
    # is removed again after the test.
    monkeypatch.setitem(data.catalog.SOURCES, "my-folder", None)
    register("my-folder")(lambda options: [options.data_dir])
    assert [str(s.data_dir) for s in parse_data("my-folder", str(tmp_path))] == [str(tmp_path)]
    # Export's --calib-dir / --verify-dir follow the same rule (data.catalog.reads_folder).
    from export.calib import run_source
    from runtime.errors import UserError

    source, desc = run_source("my-folder", config={}, split="train", size=2, data_dir=tmp_path)
    assert desc["data_dir"] == str(tmp_path) and len(source) == 1
    with pytest.raises(UserError, match="is read only by a file source"):
        run_source("blobs", config={}, split="train", size=2, data_dir=tmp_path)
