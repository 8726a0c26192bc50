"""python -m train.label: Haar auto-labelling into the selfie CSV layout."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from runtime.contract import box_iou
from data import assets
from train.label import main, run
from data.catalog import get_source


@pytest.fixture
def face_folder(tmp_path: Path, write_image: Callable[..., Path]) -> Path:
    """one.jpg: the astronaut (one face); two.png: two portraits; none.jpg: a brick wall."""
    folder = tmp_path / "photos"
    write_image(folder / "one.jpg", assets.load_image("astronaut"))
    grace = cv2.resize(assets.load_image("grace_hopper"), (427, 500), interpolation=cv2.INTER_AREA)
    pair = np.concatenate([assets.load_image("astronaut")[:500], grace], axis=1)
    write_image(folder / "sub" / "two.png", pair)
    write_image(folder / "none.jpg", assets.load_image("brick"))
    (folder / "readme.jpg").write_text("not an image")
    return folder


def test_label_cli_writes_the_csv_layout_and_reports(
    face_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.csv"
    assert main(["--images", str(face_folder), "--cascade", "frontalface", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "none.jpg" in printed and "no detection" in printed  # zero-detection image reported
    assert "two.png" in printed and "2 detections" in printed
    assert "readme.jpg" in printed
    assert "not readable: it is not an" in printed  # the reader's reason, not a bare "unreadable"
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["image", "bbox", "label"]
    assert len(rows) == 2 and rows[1][0] == "photos/one.jpg" and rows[1][2] == "face"
    box = np.array([float(v) for v in rows[1][1].strip("[]").split(",")])
    assert box_iou(box, np.array(assets.FACE_BOXES["astronaut"])) > 0.6  # the astronaut's face
    src = get_source("csv", data_dir=out, split="all")  # the layout the csv source reads
    assert len(src) == 1 and src.labels == ["none", "face"]


def test_label_largest_and_keep_empty(face_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "l.csv"
    report = run(face_folder, "frontalface", out, largest=True, keep_empty=True)
    assert report.total == 4 and report.labelled == 2 and len(report.zero) == 1
    assert [Path(p).name for p, _ in report.several] == ["two.png"]
    assert len(report.unreadable) == 1
    rows = list(csv.DictReader(out.open()))
    by_name = {Path(r["image"]).name: r for r in rows}
    assert by_name["none.jpg"]["bbox"] == ""  # written as a negative
    x1, y1, x2, y2 = (int(v) for v in by_name["two.png"]["bbox"].strip("[]").split(","))
    assert x1 >= 512  # the larger face is Grace Hopper's, right of the astronaut
    src = get_source("csv", data_dir=out, split="all")
    assert len(src) == 3 and sum(src[i].label == 0 for i in range(3)) == 1


def test_label_cli_user_mistakes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "l.csv")
    assert main(["--images", str(tmp_path / "nope"), "--cascade", "frontalface", "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--images", str(tmp_path / "empty"), "--cascade", "frontalface", "--out", out]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--images", str(tmp_path), "--cascade", "dogface", "--out", out])
    assert exc.value.code == 2


def test_label_cli_path_mistakes_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              face_folder: Path) -> None:
    photo = face_folder / "one.jpg"
    before = photo.read_bytes()
    # --images a file: it exists, so "does not exist" was wrong
    assert main(["--images", str(photo), "--cascade", "frontalface", "--out", str(tmp_path / "l.csv")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
    # --out under a path that cannot be a folder: was a FileNotFoundError traceback from mkdir
    out = photo / "labels.csv"
    assert main(["--images", str(face_folder), "--cascade", "frontalface", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder of --out" in err and "Traceback" not in err
    assert photo.read_bytes() == before


@pytest.mark.parametrize("flags, message", [
    (["--scale-factor", "nan"], "--scale-factor must be above 1"),  # was a cv2.error traceback
    (["--scale-factor", "1"], "--scale-factor must be above 1"),
    (["--scale-factor", "1.0001"], "--scale-factor must be above 1"),  # ~10 s a photo: looked hung
    (["--min-size", "99999999999"], "--min-size must be 1-"),  # was a cv2.error traceback
    (["--min-size", "0"], "--min-size must be 1-"),
    (["--min-neighbors", "99999999999"], "--min-neighbors must be 0-"),  # cv2.error: not a C int
    (["--min-neighbors", "-1"], "--min-neighbors must be 0-"),
    (["--label", "none"], "'none' is the no-object class"),  # wrote rows training refuses
    (["--label", " "], "cannot name an object"),
    (["--images", ""], "--images is empty"),  # an unset variable: labelled the current folder
    (["--out", " "], "--out is empty"),
])
def test_label_cli_bad_flags_exit_2_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   face_folder: Path, flags: list[str], message: str) -> None:
    out = tmp_path / "l.csv"
    assert main(["--images", str(face_folder), "--cascade", "frontalface", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_label_output_reads_back_with_odd_names_and_skips_non_utf8_names(
    tmp_path: Path, write_image: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "photos"
    names = [" lead.jpg", "comma,name.jpg", "new\nline.jpg", 'quote"q.jpg', "tab\tname.jpg", "plain.jpg"]
    for name in names:
        write_image(folder / name, assets.load_image("astronaut"))
    bad = folder / os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name: cannot be written into a UTF-8 CSV
    write_image(bad, assets.load_image("astronaut"))
    out = tmp_path / "labels.csv"
    with caplog.at_level("WARNING"):
        report = run(folder, "frontalface", out)
    assert report.bad_names == [str(bad)] and report.labelled == len(names)
    assert f"skipped {str(bad)!r}" in caplog.text and "rename it" in caplog.text
    written = {row["image"]: [float(v) for v in row["bbox"].strip("[]").split(",")]
               for row in csv.DictReader(out.open(encoding="utf-8", newline=""))}
    assert sorted(Path(p).name for p in written) == sorted(names)
    src = get_source("csv", data_dir=out, split="all")
    assert not src.problems and len(src) == len(names)
    for i in range(len(src)):
        sample = src[i]
        h, w = sample.image.shape[:2]
        rel = Path(sample.name).relative_to(tmp_path).as_posix()
        np.testing.assert_allclose(sample.box * [w, h, w, h], written[rel], atol=1e-3)


@pytest.mark.parametrize("name, link", [("model.keras", False), ("photo.jpg", False),
                                        ("clip.mp4", False), ("labels.csv", True)])
def test_label_refuses_an_out_that_is_no_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            face_folder: Path, name: str, link: bool) -> None:
    # A file outside --images (a model, a photo, a video): the CSV replaced it, exit 1.
    victim = tmp_path / ("model.keras" if link else name)
    victim.write_bytes(b"precious bytes")
    out = tmp_path / name if link else victim
    if link:  # labels.csv -> model.keras: written through the link
        out.symlink_to(victim)
    assert main(["--images", str(face_folder), "--cascade", "frontalface", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ".csv" in err and "Traceback" not in err
    assert victim.read_bytes() == b"precious bytes"


def test_a_run_that_labels_nothing_keeps_the_existing_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_image: Callable[..., Path]
) -> None:
    # A rerun with the wrong folder or cascade replaced hand-corrected labels with a header.
    walls = tmp_path / "walls"
    write_image(walls / "brick.jpg", assets.load_image("brick"))
    out = tmp_path / "labels.csv"
    out.write_text("image,bbox,label\nphotos/one.jpg,\"[1, 2, 30, 40]\",face\n")
    before = out.read_bytes()
    assert main(["--images", str(walls), "--cascade", "frontalface", "--out", str(out)]) == 1
    assert out.read_bytes() == before
    assert "kept as it was" in " ".join(capsys.readouterr().out.split())
    args = ["--images", str(walls), "--cascade", "frontalface", "--out", str(out), "--keep-empty"]
    assert main(args) == 1 and out.read_bytes() == before  # not turned into negatives either
    fresh = tmp_path / "new.csv"  # no CSV there yet: the header-only file is still written
    assert main(["--images", str(walls), "--cascade", "frontalface", "--out", str(fresh)]) == 1
    assert fresh.read_text().splitlines() == ["image,bbox,label"]
