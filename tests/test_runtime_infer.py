"""python -m runtime.infer on image files, folders and broken files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from runtime import infer
from runtime.models import DEFAULT_MODEL
from tests import test_runtime_helpers as helpers
from tests.test_runtime_helpers import BOX_XYXY, write_images

runtime_models = helpers.runtime_models  # the session fixture, shared by the runtime tests
ROOT = Path(__file__).resolve().parent.parent


def test_infer_writes_one_line_per_image_and_lists_errors(runtime_models, tmp_path, capsys):
    images = write_images(tmp_path / "a", n=3, corrupt=(1,))
    extra = write_images(tmp_path / "b", n=1)[0]  # same file name as a/img_00.jpg
    out, drawn = tmp_path / "results.jsonl", tmp_path / "drawn"
    rc = infer.main(
        [
            "--model",
            str(runtime_models["onnx"]),
            str(tmp_path / "a"),
            str(extra),
            "--out",
            str(out),
            "--draw",
            str(drawn),
            "--threads",
            "1",
        ]
    )
    assert rc == 1  # one image failed; the others were still processed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in images] + [str(extra)]
    bad = lines[1]
    assert bad["image"] == str(images[1]) and "img_01.jpg has a broken image header" in bad["error"]
    assert "box" not in bad
    for line in (lines[0], lines[2], lines[3]):
        w, h = line["width"], line["height"]
        expected = [BOX_XYXY[0] * w, BOX_XYXY[1] * h, BOX_XYXY[2] * w, BOX_XYXY[3] * h]
        np.testing.assert_allclose(line["box"], expected, atol=1.0)
        assert line["label"] == "cat" and line["present"] is True
        assert 0.8 < line["score"] < 0.95 and line["latency_ms"] > 0
    assert sorted(p.name for p in drawn.iterdir()) == ["img_00.jpg", "img_00_1.jpg", "img_02.jpg"]
    assert cv2.imread(str(drawn / "img_02.jpg")).shape == cv2.imread(str(images[2])).shape
    err = capsys.readouterr().err
    assert "unreadable" in err and "img_01.jpg" in err and "model failed" not in err


def test_infer_to_stdout_and_threshold(runtime_models, tmp_path, capsys):
    images = write_images(tmp_path / "a", n=2)
    rc = infer.main(
        ["--model", str(runtime_models["u8"]), *map(str, images), "--threshold", "0.95"]
    )
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and not any(line["present"] for line in lines)


def test_infer_bad_arguments_exit_2(runtime_models, tmp_path, capsys):
    images = write_images(tmp_path / "a", n=1)
    model = str(runtime_models["u8"])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--model", model, str(tmp_path / "missing.jpg")], "not found"),
        (["--model", model, str(empty)], "no images to process"),
        (["--model", str(tmp_path / "m.tflite"), str(images[0])], "model file"),
        (["--model", model, str(images[0]), "--threshold", "-1"], "--threshold must be in [0, 1]"),
        (
            ["--model", model, str(images[0]), "--out", str(tmp_path / "no" / "r.jsonl")],
            "does not exist",
        ),
        (  # the results are JSON lines whatever the name: a .csv of them is silently wrong
            ["--model", model, str(images[0]), "--out", str(tmp_path / "r.csv")],
            f"--out {tmp_path / 'r.csv'}: the results are JSON lines, not a .csv file; name "
            "it r.jsonl",
        ),
    ]
    for argv, message in cases:
        assert infer.main(argv) == 2, argv
        assert message in capsys.readouterr().err.replace("\n", ""), argv
    assert not (tmp_path / "no").exists() and not (tmp_path / "r.csv").exists()


def test_infer_ends_quietly_when_its_reader_goes_away(runtime_models, tmp_path):
    """`python -m runtime.infer ... | head -1`: no BrokenPipeError traceback, exit 141."""
    write_images(tmp_path / "many", n=120, size=(24, 32))  # ~24 kB of lines: several flushes
    for extra in ([], ["--out", "-"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.infer", "--model", str(runtime_models["u8"]),
             str(tmp_path / "many"), "--threads", "1", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert json.loads(proc.stdout.readline())["image"].endswith("img_00.jpg")
        proc.stdout.close()  # what `head -1` does after its line
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 141, err[-1500:]
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err


def test_infer_output_write_failure_is_one_line(runtime_models, tmp_path, capsys):
    images = [str(p) for p in write_images(tmp_path / "a", n=3)]
    model = str(runtime_models["u8"])
    assert infer.main(["--model", model, *images, "--out", "/dev/full"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "cannot write the results to --out /dev/full: No space left on device" in err
    with open("/dev/full", "w") as full:  # stdout on a full disk
        proc = subprocess.run([sys.executable, "-m", "runtime.infer", "--model", model, *images],
                              cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert proc.stderr.strip().splitlines() == [
        "error: cannot write the results to stdout: No space left on device; free some space "
        "or pass --out PATH on another disk"
    ]


def test_infer_draws_a_pgm_input_as_png_beside_an_input_of_that_name(runtime_models, tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "g.pgm"), np.full((50, 70), 128, np.uint8))
    assert cv2.imwrite(str(folder / "g.pgm.png"), np.full((40, 30, 3), 90, np.uint8))
    drawn = tmp_path / "drawn"
    argv = ["--model", str(runtime_models["u8"]), str(folder), "--draw", str(drawn),
            "--out", str(tmp_path / "r.jsonl"), "--threads", "1"]
    assert infer.main(argv) == 0
    assert all("error" not in json.loads(line) for line in (tmp_path / "r.jsonl").open())
    # g.pgm.png keeps its own name; g.pgm's drawing takes the next free .png name.
    assert sorted(p.name for p in drawn.iterdir()) == ["g.pgm.png", "g.pgm_1.png"]
    assert cv2.imread(str(drawn / "g.pgm_1.png")).shape == (50, 70, 3)
    assert cv2.imread(str(drawn / "g.pgm.png")).shape == (40, 30, 3)


def test_drawing_names_keep_every_own_name_and_each_line_names_its_drawing(tmp_path):
    images = [write_images(tmp_path / "u1", n=1)[0].rename(tmp_path / "u1" / "a.jpg"),
              write_images(tmp_path / "u2", n=1)[0].rename(tmp_path / "u2" / "a.jpg"),
              write_images(tmp_path / "u3", n=1)[0].rename(tmp_path / "u3" / "a_1.jpg")]
    drawn, out = tmp_path / "drawn", tmp_path / "r.jsonl"
    assert [p.name for p in infer.draw_targets(images, drawn)] == ["a.jpg", "a_2.jpg", "a_1.jpg"]
    options = ["--model", str(DEFAULT_MODEL), "--draw", str(drawn), "--out", str(out),
               "--threads", "1"]
    assert infer.main([*map(str, images), *options]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["image"], x["drawing"]) for x in lines] == [
        (str(images[0]), str(drawn / "a.jpg")), (str(images[1]), str(drawn / "a_2.jpg")),
        (str(images[2]), str(drawn / "a_1.jpg"))]
    for image, line in zip(images, lines):  # each drawing is of its own image
        assert cv2.imread(line["drawing"]).shape == cv2.imread(str(image)).shape
    # a drawing that could not be made is null, never a path that holds nothing
    broken = write_images(tmp_path / "u4", n=1, corrupt=(0,))[0]
    assert infer.main([str(broken), *options]) == 1
    assert json.loads(out.read_text().splitlines()[0])["drawing"] is None


def test_a_name_that_is_not_utf8_is_drawn_without_reaching_opencv(tmp_path):
    folder = tmp_path / "names"
    bad = write_images(folder, n=1)[0].rename(folder / "bad\udcff.jpg")  # bytes b"bad\xff.jpg"
    drawn = tmp_path / "drawn"
    assert infer.main(["--model", str(DEFAULT_MODEL), str(folder), "--draw", str(drawn),
                       "--out", str(tmp_path / "r.jsonl"), "--threads", "1"]) == 0
    assert os.listdir(drawn) == [bad.name]
    assert json.loads((tmp_path / "r.jsonl").read_text())["drawing"] == str(drawn / bad.name)


def test_infer_refuses_empty_names(runtime_models, tmp_path, capsys, monkeypatch):
    image = str(write_images(tmp_path / "a", n=1)[0])
    model = str(runtime_models["u8"])
    monkeypatch.chdir(tmp_path / "a")  # where an empty name would have pointed
    cases = [
        (["--model", model, ""], "an input is empty"),
        (["--model", model, " "], "an input is empty"),
        (["--model", "", image], "--model is empty"),
        (["--model", model, image, "--draw", ""], "--draw is empty"),
        (["--model", model, image, "--out", " "], "--out is empty"),
    ]
    for argv, message in cases:
        assert infer.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err and captured.out == "", argv
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["img_00.jpg"]


def test_a_video_given_as_an_image_points_to_webcam(runtime_models, tmp_path, capsys):
    # "not an image file (unknown format)" left the user guessing how to run a video.
    images = write_images(tmp_path / "a", n=1)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    rc = infer.main(["--model", str(runtime_models["u8"]), str(images[0]), str(clip)])
    assert rc == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    error = next(line["error"] for line in lines if line["image"] == str(clip))
    assert f"python -m runtime.webcam --source {clip}" in error
