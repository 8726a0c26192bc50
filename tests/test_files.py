"""File loaders (csv, voc, yolo, coco) on tiny datasets written into tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from runtime.contract import box_to_pixels
from tests.conftest import draw_box_image
from data.catalog import get_source

H, W = 60, 80  # fixture image size


def framed(sample) -> bool:  # type: ignore[no-untyped-def]
    """The sample's box frames the white rectangle drawn into its image."""
    white = sample.image.min(axis=2) > 200
    rows, cols = np.flatnonzero(white.any(1)), np.flatnonzero(white.any(0))
    h, w = white.shape
    expect = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    return np.allclose(box_to_pixels(sample.box, w, h), expect, atol=1.0)


def rect(i: int) -> tuple[int, int, int, int]:
    return (5 + i, 4 + i, 40 + i, 30 + i)


@pytest.fixture
def csv_set(tmp_path: Path, write_image: Callable[..., Path]) -> Path:
    """images/ with 6 good images and a labels.csv with a header and every kind of bad row."""
    rows = ["image,bbox,label"]
    for i in range(6):
        write_image(tmp_path / "images" / f"{i}.png", draw_box_image(H, W, rect(i)))
        x1, y1, x2, y2 = rect(i)
        rows.append(f'images/{i}.png,"[{x1}, {y1}, {x2}, {y2}]",{"cat" if i % 2 else "dog"}')
    # A GIF named .jpg (OpenCV cannot decode GIF: Pillow must), box slightly outside (clipped).
    write_image(tmp_path / "images" / "gif.jpg", draw_box_image(H, W, (50, 20, 80, 60)), fmt="gif")
    rows.append('images/gif.jpg,"[50, 20, 81, 61]",cat')
    (tmp_path / "images" / "notes.jpg").write_text("not an image")
    write_image(tmp_path / "images" / "two.png", draw_box_image(H, W, (2, 2, 20, 20)))
    rows += [
        'images/missing.jpg,"[1, 1, 10, 10]",cat',  # no such file
        'images/notes.jpg,"[1, 1, 10, 10]",cat',  # not an image
        'images/0.png,"[1, 1, 10]",cat',  # three numbers
        'images/1.png,"[30, 10, 20, 40]",cat',  # x2 < x1
        'images/2.png,"[10, 10, 300, 40]",cat',  # far outside the 80x60 image
        'images/two.png,"[2, 2, 20, 20]",cat',  # two objects in one image
        'images/two.png,"[30, 30, 70, 50]",cat',
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_csv_loads_good_rows_and_lists_bad_ones(csv_set: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        src = get_source("csv", data_dir=csv_set, split="all")
    names = sorted(Path(src[i].name).name for i in range(len(src)))
    # 0.png, 1.png and 2.png also have a bad row each: a broken row drops its image.
    assert names == ["3.png", "4.png", "5.png", "gif.jpg"]
    assert src.labels == ["none", "cat", "dog"]
    assert all(framed(src[i]) for i in range(len(src)))
    gif = next(src[i] for i in range(len(src)) if src[i].name.endswith("gif.jpg"))
    assert gif.box[2] == 1.0 and gif.box[3] == 1.0  # clipped to the image
    text = caplog.text
    for problem in ("does not exist", "not an image file", "not four numbers", "x2 < x1",
                    "outside the 80x60 image", "2 objects"):
        assert problem in text, problem
    assert src.skipped == 6


def test_csv_multi_largest_and_no_header(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    write_image(tmp_path / "a.jpg", draw_box_image(H, W, (30, 20, 70, 50)))
    write_image(tmp_path / "b.jpg", draw_box_image(H, W, (10, 10, 30, 30)))
    (tmp_path / "l.csv").write_text(
        'a.jpg,"[2, 2, 12, 12]"\na.jpg,"[30, 20, 70, 50]"\nb.jpg,[10, 10, 30, 30]\nc.jpg,""\n'
    )
    write_image(tmp_path / "c.jpg", draw_box_image(H, W, None))
    src = get_source("csv", data_dir=tmp_path, split="all", multi="largest")
    assert len(src) == 3 and src.labels == ["none", "object"]
    by_name = {Path(src[i].name).name: src[i] for i in range(3)}
    assert framed(by_name["a.jpg"]) and framed(by_name["b.jpg"])  # the larger box of a.jpg won
    assert by_name["c.jpg"].label == 0 and not by_name["c.jpg"].box.any()  # empty bbox: a negative
    skip = get_source("csv", data_dir=tmp_path / "l.csv", split="all", multi="skip")
    assert sorted(Path(skip[i].name).name for i in range(len(skip))) == ["b.jpg", "c.jpg"]


def test_splits_are_disjoint_seeded_and_complete(
    tmp_path: Path, write_image: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    rows = []
    for i in range(10):
        write_image(tmp_path / f"{i}.png", draw_box_image(H, W, rect(i)))
        rows.append(f'{i}.png,"{list(rect(i))}"')
    (tmp_path / "l.csv").write_text("\n".join(rows))

    def names(split: str, seed: int = 0, fraction: float = 0.3) -> set[str]:
        src = get_source("csv", data_dir=tmp_path / "l.csv", split=split, seed=seed, val_fraction=fraction)
        return {src[i].name for i in range(len(src))}

    train, val, test = names("train"), names("val"), names("test")
    assert (len(train), len(val), len(test)) == (7, 2, 1)
    assert not train & val and not train & test and not val & test  # the test never picks the model
    assert {Path(n).name for n in train | val | test} == {f"{i}.png" for i in range(10)}
    assert names("train") == train and names("train", seed=1) != train
    with caplog.at_level("WARNING"):  # one held-out image cannot be halved: val and test share it
        assert names("val", fraction=0.1) == names("test", fraction=0.1) and len(names("train", fraction=0.1)) == 9
    assert "only 1 held-out image, used for both val and test; raise val_fraction" in caplog.text


def test_missing_and_empty_datasets_raise_clear_errors(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        get_source("voc", data_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="needs data_dir"):
        get_source("csv")
    (tmp_path / "l.csv").write_text('x.jpg,"[1, 2, 3, 4]"\n')
    with pytest.raises(ValueError, match=r"l\.csv has no usable image with an object.*x\.jpg does not exist"):
        get_source("csv", data_dir=tmp_path / "l.csv")
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="no VOC annotation"):
        get_source("voc", data_dir=tmp_path / "e")
    with pytest.raises(ValueError, match="multi"):
        get_source("csv", data_dir=tmp_path / "l.csv", multi="first")


def voc_xml(filename: str, boxes: list[tuple[int, int, int, int]], name: str = "cat") -> str:
    objects = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>" for a, b, c, d in boxes
    )
    # A wrong size field on purpose: the decoded image size wins.
    return f"<annotation><filename>{filename}</filename><size><width>0</width><height>0</height></size>{objects}</annotation>"


def test_voc_folder_layouts_multi_and_bad_xml(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    root = tmp_path / "voc"
    for i in range(3):
        write_image(root / "images" / f"{i}.jpg", draw_box_image(H, W, rect(i)))
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{i}.xml").write_text(voc_xml(f"{i}.jpg", [rect(i)]))
    write_image(root / "images" / "m.jpg", draw_box_image(H, W, (10, 10, 70, 50)))
    (root / "annotations" / "m.xml").write_text(voc_xml("m.jpg", [(10, 10, 70, 50), (1, 1, 5, 5)]))
    (root / "annotations" / "bad.xml").write_text("<annotation><object>")
    write_image(root / "images" / "neg.jpg", draw_box_image(H, W, None))
    (root / "annotations" / "neg.xml").write_text(voc_xml("neg.jpg", []))
    skip = get_source("voc", data_dir=root, split="all")
    assert len(skip) == 4 and skip.skipped == 2 and skip.labels == ["none", "cat"]
    largest = get_source("voc", data_dir=root, split="all", multi="largest")
    assert len(largest) == 5
    for i in range(len(largest)):
        s = largest[i]
        assert (s.label == 0 and not s.box.any()) if "neg" in Path(s.name).name else (s.label == 1 and framed(s))
    # XML next to the images, no <filename>: found by the XML's name.
    flat = tmp_path / "flat"
    write_image(flat / "z.png", draw_box_image(H, W, rect(2)))
    (flat / "z.xml").write_text(voc_xml("", [rect(2)], name="dog").replace("<filename></filename>", ""))
    src = get_source("voc", data_dir=flat, split="all")
    assert len(src) == 1 and src.labels == ["none", "dog"] and framed(src[0])


def test_yolo_names_negatives_and_bad_lines(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    root = tmp_path / "yolo"
    for i in range(3):
        write_image(root / "images" / "train" / f"{i}.jpg", draw_box_image(H, W, rect(i)))
        x1, y1, x2, y2 = rect(i)
        line = f"{i % 2} {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {(x2 - x1) / W} {(y2 - y1) / H}"
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"{i}.txt").write_text(line + "\n")
    write_image(root / "images" / "train" / "neg.jpg", draw_box_image(H, W, None))  # no label file
    write_image(root / "images" / "train" / "bad.jpg", draw_box_image(H, W, rect(0)))
    (root / "labels" / "train" / "bad.txt").write_text("cat 0.5 0.5 0.2\n")
    (root / "data.yaml").write_text("path: .\nnames:\n  0: person\n  1: cat\n")
    src = get_source("yolo", data_dir=root, split="all")
    assert len(src) == 4 and src.skipped == 1 and src.labels == ["none", "cat", "person"]
    for i in range(4):
        s = src[i]
        if "neg" in Path(s.name).name:
            assert s.label == 0 and not s.box.any()
        else:
            assert framed(s) and src.labels[s.label] == ("cat" if s.name.endswith("1.jpg") else "person")
    (root / "classes.txt").write_text("a\nb\n")  # classes.txt wins over data.yaml
    assert get_source("yolo", data_dir=root, split="all").labels == ["none", "a", "b"]
    (root / "labels").rename(root / "labelz")  # no label file anywhere: an error, not all negatives
    with pytest.raises(ValueError, match="no YOLO label file"):
        get_source("yolo", data_dir=root)


def test_coco_json_negatives_crowd_and_malformed(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    images, anns = [], []
    for i in range(3):
        write_image(tmp_path / "images" / f"{i}.jpg", draw_box_image(H, W, rect(i)))
        x1, y1, x2, y2 = rect(i)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 0, "height": 0})
        anns.append({"id": i, "image_id": i + 1, "category_id": 7, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    write_image(tmp_path / "images" / "n.jpg", draw_box_image(H, W, None))
    images.append({"id": 9, "file_name": "n.jpg"})  # no annotation: a negative
    anns.append({"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, 80, 60], "iscrowd": 1})
    anns.append({"id": 6, "image_id": 2, "category_id": 7, "bbox": "oops"})  # drops image 2
    data = {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "cat"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    src = get_source("coco", data_dir=tmp_path / "ann.json", split="all")
    assert len(src) == 3 and src.skipped == 1 and src.labels == ["none", "cat"]
    assert sum(src[i].label == 0 for i in range(3)) == 1
    assert all(framed(src[i]) for i in range(3) if src[i].label)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO JSON file"):
        get_source("coco", data_dir=tmp_path / "broken.json")
