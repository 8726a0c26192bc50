"""Hostile datasets for the file readers: paths leaving the dataset, boxes that are not
boxes, labels that are not one line, and files that the format does not expect."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import pytest

from data.catalog import open_source
from tests.conftest import draw_box_image

H, W = 60, 80  # fixture image size
BOX = (5, 4, 40, 30)  # the white rectangle of every image, x1, y1, x2, y2 pixels


def image(folder: Path, write_image: Callable[..., Path], name: str) -> Path:
    return write_image(folder / name, draw_box_image(H, W, BOX))


def names_of(src) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(Path(src[i].name).name for i in range(len(src)))


def write_coco(path: Path, files: list[str], bboxes: list | None = None, categories: list | None = None,
               category_ids: list | None = None) -> Path:
    """A COCO JSON naming ``files`` (ids 1, 2, ...), one annotation each."""
    x1, y1, x2, y2 = BOX
    bboxes = bboxes or [[x1, y1, x2 - x1, y2 - y1]] * len(files)
    ids = category_ids or [1] * len(files)
    anns = [{"image_id": i + 1, "bbox": b, "category_id": c} for i, (b, c) in enumerate(zip(bboxes, ids))]
    data = {"images": [{"id": i + 1, "file_name": f} for i, f in enumerate(files)], "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}] if categories is None else categories}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_file_names_never_leave_the_dataset(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    root = tmp_path / "set"
    image(root / "images", write_image, "a.jpg")
    image(root / "images" / "sub", write_image, "b.jpg")
    image(tmp_path, write_image, "secret.jpg")  # outside the dataset folder
    files = ["a.jpg", "sub/b.jpg", "../secret.jpg", str(tmp_path / "secret.jpg"), "images/../../secret.jpg",
             "..\\secret.jpg", "secret.jpg"]  # the last: a bare name found only one folder up
    src = open_source("coco", data_dir=write_coco(root / "ann.json", files), split="all")
    assert names_of(src) == ["a.jpg", "b.jpg"]  # secret.jpg was read and trained on
    text = "\n".join(src.problems)
    for i in (3, 4, 5, 6):
        assert f"image {i} ({files[i - 1]}): file_name points outside the dataset" in text, files[i - 1]
    assert "image 7 (secret.jpg): image" in text and "does not exist" in text
    assert len(src.problems) == 5
    # annotations/x.json: the dataset folder is the one above, and its images are found.
    layout = tmp_path / "layout"
    image(layout / "images", write_image, "c.jpg")
    image(layout, write_image, "d.jpg")
    src = open_source("coco", data_dir=write_coco(layout / "annotations" / "x.json", ["c.jpg", "d.jpg"]),
                      split="all")
    assert names_of(src) == ["c.jpg", "d.jpg"]


@pytest.mark.parametrize("bbox, problem", [
    ([float("nan"), 4, 35, 26], "is not a number"),
    ([5, 4, float("inf"), 26], "is not a number"),
    ([5, 4, 1e308, 1e308], "lies outside the 80x60 image"),
    ([-50, 4, 35, 26], "lies outside the 80x60 image"),
    ([40, 4, -35, 26], "has x2 < x1"),
    ([5, 4, 0, 26], "is empty"),
    ([0.1, 0.1, 0.5, 0.5], "is empty"),  # normalized where COCO takes pixels
    (["5", "4", "35", "26"], "is not a list of 4 numbers"),
    ([5, 4, 35, 26, 1], "is not a list of 4 numbers"),
    ([True, 4, 35, 26], "is not a list of 4 numbers"),
])
def test_coco_boxes_that_are_not_boxes_drop_their_image(
    tmp_path: Path, write_image: Callable[..., Path], bbox: list, problem: str
) -> None:
    for name in ("ok.jpg", "bad.jpg"):
        image(tmp_path, write_image, name)
    path = write_coco(tmp_path / "ann.json", ["ok.jpg", "bad.jpg"], [[5, 4, 35, 26], bbox])
    src = open_source("coco", data_dir=path, split="all")
    assert names_of(src) == ["ok.jpg"] and len(src.problems) == 1 and problem in src.problems[0]


def test_coco_without_categories_keeps_category_ids_apart(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        image(tmp_path, write_image, name)
    path = write_coco(tmp_path / "ann.json", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], categories=[],
                      category_ids=[1, 2, 2, "x"])
    src = open_source("coco", data_dir=path, split="all")
    assert src.labels == ["none", "class1", "class2"]  # were all one class "object"
    assert names_of(src) == ["a.jpg", "b.jpg", "c.jpg"]
    assert "category_id 'x' is not a whole number" in src.problems[0]


def test_class_names_with_line_breaks_are_refused_in_every_format(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    coco = tmp_path / "coco"
    image(coco, write_image, "a.jpg")
    image(coco, write_image, "b.jpg")
    path = write_coco(coco / "ann.json", ["a.jpg", "b.jpg"], categories=[{"id": 1, "name": "cat"},
                      {"id": 2, "name": "ca\nt"}], category_ids=[1, 2])
    src = open_source("coco", data_dir=path, split="all")
    assert names_of(src) == ["a.jpg"] and "class name 'ca\\nt' holds a line break" in src.problems[0]
    voc = tmp_path / "voc"
    for name, label in (("a", "cat"), ("b", "ca&#10;t"), ("c", "do&#9;g")):
        image(voc, write_image, f"{name}.jpg")
        (voc / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><object><name>{label}</name><bndbox><xmin>5</xmin>"
            "<ymin>4</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>")
    src = open_source("voc", data_dir=voc, split="all")
    assert names_of(src) == ["a.jpg"] and src.labels == ["none", "cat"] and len(src.problems) == 2
    yolo = tmp_path / "yolo"
    image(yolo / "images", write_image, "a.jpg")
    image(yolo / "images", write_image, "b.jpg")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("0 0.28 0.28 0.44 0.43\n")
    (yolo / "labels" / "b.txt").write_text("1 0.28 0.28 0.44 0.43\n")
    (yolo / "data.yaml").write_text('names: [cat, "ca\\nt"]\n')
    src = open_source("yolo", data_dir=yolo, split="all")
    assert names_of(src) == ["a.jpg"] and "holds a line break" in src.problems[0]


def test_yolo_pixel_coordinates_and_label_files_without_an_image(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    for name in ("ok", "pixels"):
        image(tmp_path / "images" / "train", write_image, f"{name}.jpg")
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "ok.txt").write_text("0 0.28 0.28 0.44 0.43\n")
    (labels / "pixels.txt").write_text("0 22 17 35 26\n")  # pixels, where YOLO takes 0-1
    (labels / "gone.txt").write_text("0 0.28 0.28 0.44 0.43\n")  # its image was deleted
    (tmp_path / "labels" / "classes.txt").write_text("cat\n")
    src = open_source("yolo", data_dir=tmp_path, split="all")
    assert names_of(src) == ["ok.jpg"]
    text = "\n".join(src.problems)
    assert "labels/train/pixels.txt: line '0 22 17 35 26' has values above 1: YOLO boxes are fractions" in text
    assert "labels/train/gone.txt: no image named gone" in text and "classes.txt" not in text
    assert len(src.problems) == 2


def test_csv_separated_by_semicolons_or_tabs_is_one_error_naming_the_separator(tmp_path: Path) -> None:
    for name, text in (("semi.csv", "image;bbox;label\na.jpg;[5, 4, 40, 30];cat\n"),
                       ("tab.csv", "a.jpg\t5\t4\t40\t30\tcat\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"{name}: the first row .* has no comma but '(;|\\t)'; save"):
            open_source("csv", data_dir=tmp_path / name)


@pytest.mark.parametrize("entity", [
    '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">'
    '<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">'
    '<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;"><!ENTITY x "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">',  # a billion
    '<!ENTITY x SYSTEM "file:///etc/hostname">',  # an external entity: never read
])
def test_voc_entities_are_neither_expanded_nor_fetched(
    tmp_path: Path, write_image: Callable[..., Path], entity: str
) -> None:
    for name, label in (("a", "cat"), ("b", "&x;")):
        image(tmp_path, write_image, f"{name}.jpg")
        (tmp_path / f"{name}.xml").write_text(
            f'<?xml version="1.0"?><!DOCTYPE annotation [{entity}]><annotation><filename>{name}.jpg</filename>'
            f"<object><name>{label}</name><bndbox><xmin>5</xmin><ymin>4</ymin><xmax>40</xmax><ymax>30</ymax>"
            "</bndbox></object></annotation>")
    src = open_source("voc", data_dir=tmp_path, split="all")
    assert names_of(src) == ["a.jpg"] and src.labels == ["none", "cat"]
    assert src.problems[0].startswith("b.xml: malformed XML")


def test_split_all_does_not_warn_about_the_held_out_images(
    tmp_path: Path, write_image: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a.jpg", "b.jpg"):
        image(tmp_path, write_image, name)
    path = write_coco(tmp_path / "ann.json", ["a.jpg", "b.jpg"])
    with caplog.at_level(logging.WARNING):
        assert len(open_source("coco", data_dir=path, split="all")) == 2
    assert "held-out" not in caplog.text
    with caplog.at_level(logging.WARNING):
        assert len(open_source("coco", data_dir=path, split="val")) == 1
    assert "only 1 held-out image" in caplog.text


def test_image_names_the_system_refuses_are_problems_not_crashes(
    tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    long = "x" * 5000 + ".jpg"  # over the file-name limit: pathlib's is_file raised OSError
    image(tmp_path, write_image, "ok.jpg")
    src = open_source("coco", data_dir=write_coco(tmp_path / "ann.json", ["ok.jpg", "b\0.jpg", long, "ok\n.jpg"]),
                      split="all")
    assert names_of(src) == ["ok.jpg"] and len(src.problems) == 3
    text = "\n".join(src.problems)
    assert "image 2 ('b\\x00.jpg'): image path" in text and "embedded null byte; fix the file name" in text
    assert "image 4 ('ok\\n.jpg'): image" in text  # the name shown on one line
    (tmp_path / "l.csv").write_bytes(b'ok.jpg,"[5, 4, 40, 30]",cat\nb\0.jpg,"[5, 4, 40, 30]",cat\n'
                                     + long.encode() + b',"[5, 4, 40, 30]",cat\n')
    src = open_source("csv", data_dir=tmp_path / "l.csv", split="all")  # was one ValueError for the run
    assert names_of(src) == ["ok.jpg"] and len(src.problems) == 2 and "l.csv:2: image path" in src.problems[0]
    voc = tmp_path / "voc"
    for name in ("ok.jpg", long):
        (voc / f"{name[:3]}.xml").parent.mkdir(exist_ok=True)
        (voc / f"{name[:3]}.xml").write_text(
            f"<annotation><filename>{name}</filename><object><name>cat</name><bndbox><xmin>5</xmin><ymin>4</ymin>"
            "<xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>")
    image(voc, write_image, "ok.jpg")
    src = open_source("voc", data_dir=voc, split="all")
    assert names_of(src) == ["ok.jpg"] and "not found next to the XML" in src.problems[0]
