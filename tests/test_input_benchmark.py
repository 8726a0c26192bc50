"""benchmarks.input_pipeline: the generated JPEG set reads back through the csv source with
its boxes, and the report renders measured and failed cells."""

from __future__ import annotations

import pytest

from benchmarks.input_pipeline import generate, main, markdown
from data.catalog import get_source


def test_generated_jpegs_read_back_with_their_boxes(tmp_path):
    labels = generate(tmp_path, 12)
    assert generate(tmp_path, 12) == labels  # complete: reused, not rewritten
    source = get_source("csv", data_dir=labels, split="all")
    assert len(source) == 12 and source.labels == ["none", "object"]
    for i in range(12):
        sample = source[i]
        assert sample.image.shape == (240, 320, 3) and sample.label == 1
        x1, y1, x2, y2 = sample.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and (x2 - x1) * 320 >= 30


def test_report_tables_show_measured_and_failed_cells():
    results = {"command": "python -m benchmarks.input_pipeline --images 20",
               "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "tensorflow": "2.21.0"},
               "images": 20, "jpeg_size": "320x240", "image_size": 128, "batch_size": 32,
               "augment": "basic",
               "input": [{"pipeline": "tf", "threads": 2, "img_per_s": 2000.4, "img_per_cpu_s": 1100.0,
                          "cache_s": 3.21, "peak_rss_mb": 900.0},
                         {"pipeline": "python-jpeg", "threads": 1, "error": "exit 1: boom"}],
               "train": [{"strategy": "mirrored", "replicas": 2, "img_per_s": 61.0, "img_per_cpu_s": 40.0}]}
    text = markdown(results)
    assert "| tf | 2 | 2000 | 1100 | 3.2 | 900 |" in text
    assert "| python-jpeg | 1 | error: exit 1: boom | | | |" in text
    assert "| mirrored | 2 | 61 | 40 |" in text and "AMD EPYC, 2 cores" in text


@pytest.mark.parametrize("flags, message", [
    (["--threads", "a"], "must be comma-separated integers"),  # was a traceback after generating
    (["--threads", "0"], "thread counts 1-256"),  # tf.data's 0 = every core, shown as 0
    (["--pipelines", "foo"], "unknown pipeline 'foo'"),  # measured the python path as "foo"
    (["--augment", "bogus"], "valid: none, basic"),  # every cell failed alike
    (["--seconds", "inf"], "--seconds must be"),  # each cell ran to its 30-minute timeout
    (["--seconds", "nan"], "--seconds must be"),
    (["--images", "0"], "--images must be"),
    (["--images", "-5"], "--images must be"),
    (["--batch-size", "99999999"], "--batch-size must be"),  # a (B, S, S, 3) batch past memory
    (["--train-steps", "0"], "--train-steps must be"),
    (["--devices", "0"], "--devices must be"),
])
def test_bad_flags_exit_2_before_generating(tmp_path, capsys, flags, message):
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "--images", "2", "--out", str(tmp_path / "r.json"),
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not data.exists() and not (tmp_path / "r.json").exists()


def test_outputs_never_replace_the_data_or_each_other(tmp_path, capsys):
    data = tmp_path / "data"
    labels = generate(data / "2", 2)
    before = labels.read_bytes()
    base = ["--data-dir", str(data), "--images", "2"]
    for flags, message in (
        (["--out", str(labels)], "is a file of the input data"),
        (["--out", str(tmp_path / "r.json"), "--markdown", str(data / "2" / "images" / "000000.jpg")],
         "is a file of the input data"),
        (["--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.json")], "same file"),
        (["--out", str(tmp_path)], "is a folder"),
        (["--out", str(labels / "r.json")], "cannot create the folder of --out"),
    ):
        assert main([*base, *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (flags, err)
    assert labels.read_bytes() == before
    assert main(["--data-dir", str(labels), "--images", "2"]) == 2  # a file: was NotADirectoryError
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_users_own_labels_csv_is_never_replaced(tmp_path, capsys):
    own = tmp_path / "data" / "3" / "labels.csv"  # --data-dir at a user's dataset folder
    own.parent.mkdir(parents=True)
    own.write_text("image,bbox,label\nme.jpg,\"[1, 2, 3, 4]\",face\n")
    before = own.read_bytes()
    assert main(["--data-dir", str(tmp_path / "data"), "--images", "3", "--out", str(tmp_path / "r.json")]) == 2
    assert "not a generated benchmark set" in capsys.readouterr().err
    assert own.read_bytes() == before and not (own.parent / "images").exists()


def test_a_users_own_images_without_labels_are_never_replaced(tmp_path, capsys):
    # Exported frames named 000000.jpg... in DATA_DIR/<count>/images: generated over them.
    frame = tmp_path / "data" / "3" / "images" / "000000.jpg"
    frame.parent.mkdir(parents=True)
    frame.write_bytes(b"my frame")
    assert main(["--data-dir", str(tmp_path / "data"), "--images", "3", "--out", str(tmp_path / "r.json")]) == 2
    assert "holds images but no generated labels.csv" in capsys.readouterr().err
    assert frame.read_bytes() == b"my frame" and not (frame.parent.parent / "labels.csv").exists()
    # The benchmark's own images, left by an interrupted run (its marker there), are redone.
    (frame.parent.parent / ".edgeloc-bench").write_text("")
    generate(frame.parent.parent, 3)
    assert frame.read_bytes() != b"my frame" and (frame.parent.parent / "labels.csv").is_file()
