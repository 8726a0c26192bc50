"""File loaders (csv, voc, yolo, coco) on tiny datasets written into tmp_path."""

from __future__ import annotations

import json
import logging
import os
import re
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


# ------------------------------------------------------------------ hostile annotation files
def one_image(folder: Path, write_image: Callable[..., Path], name: str = "a.jpg") -> Path:
    return write_image(folder / name, draw_box_image(H, W, rect(0)))


def names_of(src) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(Path(src[i].name).name for i in range(len(src)))


def test_unreadable_per_image_annotations_are_problems_not_hangs(
    tmp_path: Path, write_image: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import data.files

    root = tmp_path / "voc"
    for name in ("good", "fifo", "folder", "dangling", "big"):
        one_image(root / "images", write_image, f"{name}.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "good.xml").write_text(voc_xml("good.jpg", [rect(0)]))
    os.mkfifo(root / "annotations" / "fifo.xml")  # was read (and blocked) by ET.parse
    (root / "annotations" / "folder.xml").mkdir()
    (root / "annotations" / "dangling.xml").symlink_to(tmp_path / "nowhere.xml")
    (root / "annotations" / "big.xml").write_text(voc_xml("big.jpg", [rect(0)]) + " " * 2000)
    monkeypatch.setattr(data.files, "ANNOTATION_LIMIT", 1000)
    src = get_source("voc", data_dir=root, split="all")
    assert names_of(src) == ["good.jpg"]
    text = "\n".join(src.problems)
    for problem in ("fifo.xml: VOC annotation", "not a regular file", "folder.xml: VOC annotation",
                    "is a folder", "dangling.xml: VOC annotation", "does not exist", "over the 0 MiB limit"):
        assert problem in text, problem
    # YOLO: a label path that is not a regular file is a problem, not a silent negative.
    yolo = tmp_path / "yolo"
    for name in ("good", "fifo", "folder"):
        one_image(yolo / "images", write_image, f"{name}.jpg")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "good.txt").write_text("0 0.3 0.3 0.2 0.2\n")
    os.mkfifo(yolo / "labels" / "fifo.txt")
    (yolo / "labels" / "folder.txt").mkdir()
    src = get_source("yolo", data_dir=yolo, split="all")
    assert names_of(src) == ["good.jpg"] and len(src.problems) == 2
    assert all("not a regular file" in p or "is a folder" in p for p in src.problems)


@pytest.mark.parametrize("name, content, message", [
    ("classes.txt", b"cat\n\xff\xfedog\n", r"classes\.txt is not UTF-8"),
    ("classes.txt", None, r"classes\.txt is a folder"),
    ("data.yaml", b"nc: 3\nnames: [cat, dog]\n", r"data\.yaml: nc is 3 but names lists 2"),
    ("data.yaml", b"names: [cat, [dog]]\n", r"cannot read the class names of .*data\.yaml"),
    ("data.yaml", b"names:\n  - cat\n  - {a: b}\n", r"cannot read the class names of .*data\.yaml"),
    ("data.yaml", b"names: cat\n", r"data\.yaml: 'names: cat' is not a list"),
    ("data.yaml", b"names: [cat, dog\n", r"data\.yaml: names has no closing"),
])
def test_yolo_unreadable_names_file_is_one_error_naming_it(
    tmp_path: Path, write_image: Callable[..., Path], name: str, content: bytes | None, message: str
) -> None:
    one_image(tmp_path / "images", write_image)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.3 0.3 0.2 0.2\n")
    if content is None:
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        get_source("yolo", data_dir=tmp_path)


@pytest.mark.parametrize("yaml, names", [
    ('nc: 3\nnames: ["cat, big", dog,\n        bird]\n', ["cat, big", "dog", "bird"]),
    ("names: {0: cat, 1: 'dog # 1'}  # two\n", ["cat", "dog # 1"]),
    ("names:\n  [cat,\n   dog]\n", ["cat", "dog"]),
    ("path: .\nnames:\n- cat  # first\n- \"dog\"\ntrain: images\n", ["cat", "dog"]),
    ("names:\n  0: cat\n  1: it's\nnc: 2\n", ["cat", "it's"]),
    ("names: ['it''s', b]\n", ["it's", "b"]),
])
def test_yolo_data_yaml_forms(yaml: str, names: list[str]) -> None:
    from data.yolo import yaml_names

    assert yaml_names(yaml) == dict(enumerate(names))


def test_yolo_class_ids_outside_the_names_are_problems(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    for name, line in (("a", "0"), ("b", "5"), ("c", "-1"), ("d", "1")):
        one_image(tmp_path / "images", write_image, f"{name}.jpg")
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"{name}.txt").write_text(f"{line} 0.3 0.3 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text('names: ["cat, big", dog]\n')
    src = get_source("yolo", data_dir=tmp_path, split="all")
    assert names_of(src) == ["a.jpg", "d.jpg"] and src.labels == ["none", "cat, big", "dog"]
    text = "\n".join(src.problems)
    assert "labels/b.txt: class 5 is outside the 2 classes data.yaml gives" in text
    assert "labels/c.txt: class -1 is negative" in text


def test_voc_namespaces_names_and_filenames(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    root = tmp_path / "voc"
    for name in ("ns", "blank", "noname", "bare", "up", "abs", "gone", "stem"):
        one_image(root / "images", write_image, f"{name}.jpg")
    one_image(tmp_path, write_image, "outside.jpg")
    ann = root / "annotations"
    ann.mkdir()
    ns = voc_xml("ns.jpg", [rect(0)]).replace("<annotation>", '<annotation xmlns="http://x.org/voc">')
    (ann / "ns.xml").write_text(ns)  # was read as a negative: no <object> without the namespace
    (ann / "blank.xml").write_text(voc_xml("blank.jpg", [rect(0)], name="  "))
    noname = voc_xml("noname.jpg", [rect(0)]).replace("<name>cat</name>", "")
    (ann / "noname.xml").write_text(noname)  # was class "object", beside "cat"
    (ann / "bare.xml").write_text(voc_xml("bare.jpg", [rect(0)]))
    (ann / "up.xml").write_text(voc_xml("../../outside.jpg", [rect(0)]))
    (ann / "abs.xml").write_text(voc_xml(str(tmp_path / "outside.jpg"), [rect(0)]))
    (ann / "gone.xml").write_text(voc_xml("typo.jpg", [rect(0)]))  # no fall-back to gone.jpg
    (ann / "stem.xml").write_text(voc_xml("", [rect(0)]))  # no <filename>: stem.jpg
    src = get_source("voc", data_dir=root, split="all")
    assert names_of(src) == ["bare.jpg", "ns.jpg", "stem.jpg"]
    assert src[names_of(src).index("ns.jpg")].label == 1 and framed(src[names_of(src).index("ns.jpg")])
    text = "\n".join(src.problems)
    assert "blank.xml: an <object> has an empty <name>" in text
    assert "noname.xml: an <object> has no <name>; write its class name" in text
    assert src.labels == ["none", "cat"]
    assert "up.xml: <filename> '../../outside.jpg' points outside the dataset" in text
    assert "abs.xml: <filename>" in text and text.count("points outside the dataset") == 2
    assert "gone.xml: image typo.jpg not found" in text


def test_declared_size_must_match_the_displayed_image(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    from PIL import Image

    root = tmp_path / "voc"
    (root / "annotations").mkdir(parents=True)
    for name in ("ok", "wrong"):
        one_image(root / "images", write_image, f"{name}.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80x60, displayed 60x80 (turned 90 degrees)
    Image.fromarray(draw_box_image(H, W, rect(0))).save(root / "images" / "turned.jpg", exif=exif)
    for name, size in (("ok", (W, H)), ("wrong", (100, 50)), ("turned", (W, H))):
        xml = voc_xml(f"{name}.jpg", [(2, 2, 30, 30)])
        (root / "annotations" / f"{name}.xml").write_text(
            xml.replace("<width>0</width><height>0</height>", f"<width>{size[0]}</width><height>{size[1]}</height>"))
    src = get_source("voc", data_dir=root, split="all")
    assert names_of(src) == ["ok.jpg"]
    text = "\n".join(src.problems)
    assert f"wrong.xml: declares 100x50 but the image is {W}x{H} as displayed; fix <size> or the boxes" in text
    assert f"turned.xml: declares {W}x{H}, the image is {H}x{W} upright (EXIF orientation)" in text
    # COCO: the images' width/height, the same rule.
    coco = {"images": [{"id": 1, "file_name": "ok.jpg", "width": W, "height": H},
                       {"id": 2, "file_name": "wrong.jpg", "width": 640, "height": 480}],
            "annotations": [{"image_id": i, "bbox": [2, 2, 20, 20], "category_id": 1} for i in (1, 2)],
            "categories": [{"id": 1, "name": "cat"}]}
    (root / "images" / "c.json").write_text(json.dumps(coco))
    src = get_source("coco", data_dir=root / "images" / "c.json", split="all")
    assert names_of(src) == ["ok.jpg"]
    assert "image 2 (wrong.jpg): declares 640x480 but the image is 80x60 as displayed" in src.problems[0]


@pytest.mark.parametrize("data, message", [
    ({"images": None}, "'images' is null, not a list"),
    ({"images": [], "annotations": 5}, "'annotations' is int, not a list"),
    ({"images": [], "categories": {"id": 1}}, "'categories' is dict, not a list"),
    ({"images": [], "categories": [{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}]},
     "category id 1 is named both 'cat' and 'dog'"),
    ("[" * 100000, "nested too deeply"),
])
def test_coco_unusable_file_is_one_error_naming_it(tmp_path: Path, data: object, message: str) -> None:
    (tmp_path / "ann.json").write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(ValueError, match=r"ann\.json.*" + re.escape(message)):
        get_source("coco", data_dir=tmp_path / "ann.json")


def test_coco_bad_records_drop_their_images_with_reasons(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    names = ["ok", "dup1", "dup2", "crowd", "str", "seg", "cat", "zero"]
    for name in names:
        one_image(tmp_path / "images", write_image, f"{name}.jpg")
    ids = {"ok": 1, "dup1": 2, "dup2": 2, "crowd": 3, "str": 4, "seg": 5, "cat": 6, "zero": 7}
    box = [5, 4, 35, 26]
    anns = [
        {"image_id": 1, "bbox": box, "category_id": 1},
        {"image_id": 2, "bbox": box, "category_id": 1},
        {"image_id": 3, "bbox": box, "category_id": 1, "iscrowd": "1"},
        {"image_id": 4, "bbox": "1234", "category_id": 1},
        {"image_id": 5, "segmentation": [[1, 1, 20, 1, 20, 20]], "category_id": 1},
        {"image_id": 6, "bbox": box, "category_id": 9},
        {"image_id": 7, "bbox": box, "category_id": 1, "iscrowd": "0"},  # the string "0" is 0
        {"image_id": 99, "bbox": box, "category_id": 1},
    ]
    data = {"images": [{"id": ids[n], "file_name": f"{n}.jpg"} for n in names], "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}, {"id": 1, "name": "cat"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    src = get_source("coco", data_dir=tmp_path / "ann.json", split="all")
    assert names_of(src) == ["ok.jpg", "zero.jpg"] and src.labels == ["none", "cat"]
    assert all(src[i].label == 1 for i in range(2))
    text = "\n".join(src.problems)
    for problem in ("image 2 (dup1.jpg): 2 images have id 2", "image 2 (dup2.jpg): 2 images have id 2",
                    "image 3 (crowd.jpg): only crowd annotations", "bbox 1234 is not a list of 4 numbers",
                    "no bbox (segmentation only)", "category_id 9 is not among the categories",
                    "image id 99 not in images"):
        assert problem in text, problem
    assert len(src.problems) == 7


def test_csv_quoted_fields_header_names_and_undecodable_rows(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        one_image(tmp_path, write_image, f"{name}.jpg")
    one_image(tmp_path, write_image, "comma, new\nline.jpg")
    rows = [b"image,bbox,label", b'"comma, new\nline.jpg","[5, 4, 40, 30]","a, b"', b'a.jpg,"[5, 4, 40, 30]",cat',
            b'b.jpg,"[5, 4, 40, 30]",caf\xe9', b'c.jpg,"[0.1, 0.1, 0.5, 0.5]",cat',
            b'd.jpg,"[5, 4, 40, 30]",None', b'e.jpg,"[5, 4, 40, 30]",dog']
    (tmp_path / "l.csv").write_bytes(b"\r\n".join(rows) + b"\r\n")
    src = get_source("csv", data_dir=tmp_path / "l.csv", split="all")
    assert names_of(src) == ["a.jpg", "comma, new\nline.jpg", "e.jpg"]
    assert src.labels == ["none", "a, b", "cat", "dog"] and src.skipped == 3  # the header is no entry
    text = "\n".join(src.problems)
    assert "l.csv:5: not UTF-8 text" in text  # line numbers count the quoted line break
    assert "l.csv:6: box [0.1, 0.1, 0.5, 0.5] looks like normalized coordinates (0-1)" in text
    assert "l.csv:7: class name 'None' is reserved" in text
    # Columns by name, in any order; x/y/w/h is a box of x, y, width, height.
    (tmp_path / "n.csv").write_text("class,ymin,xmin,ymax,xmax,filename\ncat,4,5,30,40,a.jpg\n")
    (tmp_path / "w.csv").write_text("path,x,y,w,h\nb.jpg,5,4,35,26\n")
    for name in ("n.csv", "w.csv"):
        one = get_source("csv", data_dir=tmp_path / name, split="all")
        assert len(one) == 1 and framed(one[0]), name
    (tmp_path / "u.csv").write_text("img,coords\na.jpg,1\n")
    with pytest.raises(ValueError, match=r"u\.csv: cannot tell the columns.*image: image/filename"):
        get_source("csv", data_dir=tmp_path / "u.csv")
    (tmp_path / "f.csv").write_text('a.jpg,"[5, 4, 40]",cat\nb.jpg,"[5, 4, 40, 30]",cat\n')
    first = get_source("csv", data_dir=tmp_path / "f.csv", split="all")  # a bad first row is a row
    assert names_of(first) == ["b.jpg"] and first.problems[0].startswith("f.csv:1: bbox")


def test_csv_one_image_under_two_spellings_and_box_with_negative(
    tmp_path: Path, write_image: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c", "d"):
        one_image(tmp_path, write_image, f"{name}.jpg")
    (tmp_path / "sub").mkdir()
    (tmp_path / "l.csv").write_text(
        f'a.jpg,"[5, 4, 40, 30]",cat\nsub/../a.jpg,"[1, 1, 10, 10]",cat\n{tmp_path / "b.jpg"},"[5, 4, 40, 30]",cat\n'
        'b.jpg,"[1, 1, 10, 10]",cat\nc.jpg,"[5, 4, 40, 30]",cat\nc.jpg,,cat\nd.jpg,"[5, 4, 40, 30]",Cat\n')
    with caplog.at_level(logging.WARNING):
        src = get_source("csv", data_dir=tmp_path / "l.csv", split="all")
    assert names_of(src) == ["d.jpg"]
    text = "\n".join(src.problems)
    assert text.count("2 objects") == 2  # a.jpg and b.jpg: one image each, two boxes
    assert "l.csv:5: image c.jpg has a box here and an empty box (a negative) in l.csv:6" in text
    largest = get_source("csv", data_dir=tmp_path / "l.csv", split="all", multi="largest")
    assert names_of(largest) == ["a.jpg", "b.jpg", "d.jpg"] and largest.labels == ["none", "Cat", "cat"]
    assert "labels 'Cat' and 'cat' differ only in case; they are separate classes" in caplog.text


def test_class_names_shared_by_two_ids_are_refused(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    # Two ids of one name were merged into one class without a word.
    one_image(tmp_path / "images", write_image)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("7 0.3 0.3 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("nc: 2\n")  # ids only: nc still bounds them (class7 passed)
    with pytest.raises(ValueError, match="class 7 is outside the 2 classes data.yaml gives"):
        get_source("yolo", data_dir=tmp_path, split="all")
    (tmp_path / "labels" / "a.txt").write_text("1 0.3 0.3 0.2 0.2\n")
    for name, text in (("data.yaml", "names: [cat, dog, cat]\n"), ("classes.txt", "cat\r\ncat \r\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=f"{name}: classes 0 and . are both named 'cat'"):
            get_source("yolo", data_dir=tmp_path, split="all")
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat "}]
    anns = [{"id": i, "image_id": 1, "category_id": c, "bbox": [1, 1, 9, 9]}
            for i, c in ((1, 1), (2, "2"))]
    images = [{"id": 1, "file_name": "images/a.jpg", "width": W, "height": H}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                   "categories": cats}))
    with pytest.raises(ValueError, match="categories 1 and 2 are both named 'cat'"):
        get_source("coco", data_dir=tmp_path / "ann.json")
    # Roboflow's exports add an unused category 0 named after the project (often its class)
    cats = [{"id": 0, "name": "cat"}, {"id": 1, "name": "cat"}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns[:1],
                                                   "categories": cats}))
    assert get_source("coco", data_dir=tmp_path / "ann.json", split="all").labels == ["none", "cat"]


def test_one_image_annotated_twice_with_other_boxes_is_a_problem(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    # VOC: a second XML naming the same image was read as more objects (multi=largest: silent).
    voc = tmp_path / "voc"
    for name in ("a", "b", "c"):
        one_image(voc / "images", write_image, f"{name}.jpg")
    (voc / "annotations").mkdir()
    (voc / "annotations" / "a.xml").write_text(voc_xml("a.jpg", [rect(0)]))
    (voc / "annotations" / "a2.xml").write_text(voc_xml("a.jpg", [(1, 1, 20, 20)]))
    (voc / "annotations" / "b.xml").write_text(voc_xml("b.jpg", [rect(0)]))
    (voc / "annotations" / "c.xml").write_text(voc_xml("c.jpg", [rect(0)]))
    (voc / "annotations" / "c2.xml").write_text(voc_xml("c.jpg", [rect(0)]))  # the same: one image
    one_image(voc / "images", write_image, "d.jpg")  # the same objects in another order: one image
    (voc / "annotations" / "d.xml").write_text(voc_xml("d.jpg", [rect(0), (1, 1, 20, 20)]))
    (voc / "annotations" / "d2.xml").write_text(voc_xml("d.jpg", [(1, 1, 20, 20), rect(0)]))
    src = get_source("voc", data_dir=voc, split="all", multi="largest")
    assert names_of(src) == ["b.jpg", "c.jpg", "d.jpg"]
    assert "a.xml: image a.jpg is annotated again, with other boxes, in annotations/a2.xml" in src.problems[0]
    # COCO: two image records of one file.
    coco = tmp_path / "coco"
    for name in ("a", "b"):
        one_image(coco, write_image, f"{name}.jpg")
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}]
    anns = [{"image_id": i, "bbox": box, "category_id": 1}
            for i, box in ((1, [5, 4, 35, 26]), (2, [1, 1, 10, 10]), (3, [5, 4, 35, 26]))]
    (coco / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                               "categories": [{"id": 1, "name": "cat"}]}))
    src = get_source("coco", data_dir=coco, split="all", multi="largest")
    assert names_of(src) == ["b.jpg"] and "annotated again" in src.problems[0]
    # YOLO: a linked copy with its own labels, and two images sharing one label file.
    yolo = tmp_path / "yolo"
    for name in ("a.jpg", "b.jpg", "d.jpg", "d.png"):
        one_image(yolo / "images", write_image, name)
    os.symlink("a.jpg", yolo / "images" / "c.jpg")
    (yolo / "labels").mkdir()
    for name, line in (("a", "0 0.3 0.3 0.2 0.2"), ("c", "1 0.5 0.5 0.2 0.2"), ("b", "0 0.3 0.3 0.2 0.2"),
                       ("d", "0 0.3 0.3 0.2 0.2")):
        (yolo / "labels" / f"{name}.txt").write_text(line + "\n")
    src = get_source("yolo", data_dir=yolo, split="all", multi="largest")
    assert names_of(src) == ["b.jpg"]
    text = "\n".join(src.problems)
    assert "labels/a.txt: image a.jpg is annotated again, with other boxes, in labels/c.txt" in text
    assert "labels/d.txt: images/d.png shares this label file with another image named d.*" in text


def test_a_yolo_label_file_in_other_case_is_a_problem(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    # labels/a.TXT is not labels/a.txt on Linux: a.jpg became a negative without a word.
    for name in ("a", "b"):
        one_image(tmp_path / "images", write_image, f"{name}.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.TXT").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    src = get_source("yolo", data_dir=tmp_path, split="all")
    assert names_of(src) == ["b.jpg"]
    assert src.problems == ["labels/a.TXT: its name differs in case from a.txt, the label file of "
                            "images/a.jpg; rename it (the image is skipped until then)"]
    # A.jpg with labels/A.txt beside a negative a.jpg: A.txt is A.jpg's, not a misnamed a.txt
    other = tmp_path / "other"
    for name in ("A", "a"):
        one_image(other / "images", write_image, f"{name}.jpg")
    (other / "labels").mkdir()
    (other / "labels" / "A.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    src = get_source("yolo", data_dir=other, split="all")
    assert names_of(src) == ["A.jpg", "a.jpg"] and not src.problems, src.problems
