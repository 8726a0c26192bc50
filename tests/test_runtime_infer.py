"""python -m runtime.infer on image files, folders and broken files."""

from __future__ import annotations

import json

import cv2
import numpy as np

from runtime import infer
from tests import test_runtime_helpers as helpers
from tests.test_runtime_helpers import BOX_XYXY, write_images

runtime_models = helpers.runtime_models  # the session fixture, shared by the runtime tests


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
    ]
    for argv, message in cases:
        assert infer.main(argv) == 2, argv
        assert message in capsys.readouterr().err.replace("\n", ""), argv
    assert not (tmp_path / "no").exists()
