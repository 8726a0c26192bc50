"""Latency benchmark: timing core, model cost, results schema, end-to-end runs and report merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import _cost, _evalset, _matrix, _schema, _timing, latency, report
from benchmarks._cell import run_cell
from benchmarks._fingerprint import fingerprint
from tests import test_runtime_helpers as helpers

runtime_models = helpers.runtime_models  # the session fixture shared with the runtime tests

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--runs", "5", "--warmup", "1", "--threads", "1", "--baseline", "none", "--no-plots"]


# ---- fixtures --------------------------------------------------------------------------------


def _write_csv_set(folder: Path, n: int = 4) -> Path:
    """A tiny CSV eval set (selfie layout): image,bbox,label with pixel [x1, y1, x2, y2]."""
    (folder / "images").mkdir(parents=True)
    rows = ["image,bbox,label"]
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        cv2.rectangle(img, (10 + i, 8), (40 + i, 36), (255, 255, 255), -1)
        cv2.imwrite(str(folder / "images" / f"{i}.png"), img)
        rows.append(f'images/{i}.png,"[{10 + i}, 8, {40 + i}, 36]",object')
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run dir with an untrained 32 px model and its fp32/int8 TFLite and ONNX exports."""
    pytest.importorskip("tensorflow")
    from export.onnx import export_onnx
    from export.options import CalibrationOptions
    from export.tflite import export_tflite
    from train.model import ModelSpec, build_model

    run = tmp_path_factory.mktemp("run")
    spec = ModelSpec(
        backbone="small_cnn", image_size=32, alpha=0.25, head_units=8, labels=("none", "cat")
    )
    build_model(spec).save(run / "model.keras")
    config = {
        "model": {**asdict(spec), "labels": list(spec.labels)},
        "data": {"source": "cat-on-scenes"},
    }
    (run / "config.json").write_text(json.dumps(config))
    for q in ("none", "int8"):
        export_tflite(run, quantize=q, calib=CalibrationOptions(size=8), verify=None)
        export_onnx(run, quantize=q, calib=CalibrationOptions(size=8), verify=None)
    return run


@pytest.fixture(scope="module")
def csv_set(tmp_path_factory) -> Path:
    return _write_csv_set(tmp_path_factory.mktemp("evalcsv"))


@pytest.fixture(scope="module")
def models_dir(tiny_run, tmp_path_factory) -> Path:
    """Exported files only, plus a corrupt .tflite and a truncated .onnx."""
    folder = tmp_path_factory.mktemp("models")
    for name in ("model_int8.tflite", "model_int8.onnx", "model_fp32.onnx"):
        shutil.copy(tiny_run / name, folder / name)
    (folder / "broken.tflite").write_bytes(b"\x00" * 4 + b"TFL3" + os.urandom(200))
    (folder / "cut.onnx").write_bytes((tiny_run / "model_fp32.onnx").read_bytes()[:300])
    return folder


def _cells(results: dict, **match) -> list[dict]:
    return [c for c in results["cells"] if all(c.get(k) == v for k, v in match.items())]


# ---- timing core -----------------------------------------------------------------------------


def test_timing_excludes_warmup_and_counts_runs():
    calls = []
    samples = _timing.sample(lambda: calls.append(1), warmup=7, runs=25)
    assert len(samples) == 25 and len(calls) == 32  # warm-up calls are made but not timed
    assert np.all(samples >= 0)
    timed = _timing.sample(lambda: None, warmup=0, runs=None, seconds=0.05)
    assert len(timed) >= _timing.MIN_RUNS


def test_summary_statistics_on_known_samples():
    stats = _timing.summarize(np.arange(1, 101, dtype=float))  # 1..100 ms
    assert stats["n"] == 100 and stats["min"] == 1 and stats["max"] == 100
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["mean"] == pytest.approx(50.5) and len(stats["quantiles"]) == 101
    assert _timing.iqr(stats) == pytest.approx(49.5)
    near = {**stats, "p50": stats["p50"] + stats["std"] / 2}
    far = {**stats, "p50": stats["p50"] + 2 * stats["std"]}
    assert _timing.medians_agree(stats, near) and not _timing.medians_agree(stats, far)


# ---- cost ------------------------------------------------------------------------------------


def test_macs_of_a_known_layer_stack():
    keras = pytest.importorskip("keras")
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)  # 8*8*4*3*3*3 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8*4*9 = 2304
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5)(x)  # 4*5 = 20
    cost = _cost.keras_cost(keras.Model(inp, out))
    assert cost["macs"] == 6912 + 2304 + 20
    assert cost["params"] == (3 * 3 * 3 * 4 + 4) + (3 * 3 * 4 + 4) + (4 * 5 + 5)


def test_pi_estimates_scale_with_macs_and_precision():
    ref = _cost.pi_estimates(int(_cost.REF_MACS), "int8")
    assert ref["pi4"] == [17.0, 20.0]  # the published MobileNetV2 figure itself
    half = _cost.pi_estimates(int(_cost.REF_MACS / 2), "fp32")
    assert half["pi4"] == [20.5, 23.0]
    assert half["pi5"][1] == pytest.approx(half["pi4"][1] / 2)
    assert _cost.pi_estimates(None, "int8") == {"pi4": None, "pi5": None}


# ---- schema and report -----------------------------------------------------------------------


def _fake_run(device: str, p50: float) -> dict:
    stats = _timing.summarize(np.full(10, p50))
    ok = _schema.new_cell(
        variant="m_int8.tflite",
        kind="model",
        format="tflite",
        precision="int8",
        backend="ai_edge_litert",
        threads=1,
        status="ok",
        latency_ms=stats,
        mean_iou=0.8,
        corloc=0.9,
    )
    skip = _schema.new_cell(
        variant="m_int8.onnx",
        kind="model",
        format="onnx",
        backend="onnxruntime",
        provider="CUDAExecutionProvider",
        device="gpu",
        status="skipped",
        reason="no GPU",
    )
    return {
        "schema": _schema.SCHEMA,
        "schema_version": _schema.SCHEMA_VERSION,
        "created": "now",
        "device": {"name": device, "fingerprint": fingerprint()},
        "settings": {},
        "eval": {"name": None, "n": 0, "reason": "none"},
        "cells": [ok, skip],
    }


def test_schema_rejects_foreign_older_and_broken_results(tmp_path):
    good = _fake_run("laptop", 1.0)
    _schema.validate(json.loads(json.dumps(good)))
    with pytest.raises(_schema.ResultsError, match="not an edgeloc benchmark"):
        _schema.validate({"results": []})
    with pytest.raises(_schema.ResultsError, match="older than"):
        _schema.validate({**good, "schema_version": 0})
    with pytest.raises(_schema.ResultsError, match="newer than"):
        _schema.validate({**good, "schema_version": 99})
    broken = json.loads(json.dumps(good))
    broken["cells"][0]["status"] = "great"
    with pytest.raises(_schema.ResultsError, match="unknown status"):
        _schema.validate(broken)
    missing = json.loads(json.dumps(good))
    del missing["cells"][1]["latency_ms"]
    with pytest.raises(_schema.ResultsError, match="lacks latency_ms"):
        _schema.validate(missing)
    untimed = json.loads(json.dumps(good))
    untimed["cells"][0]["latency_ms"] = None
    with pytest.raises(_schema.ResultsError, match="no latency_ms"):
        _schema.validate(untimed)
    with pytest.raises(KeyError):
        _schema.new_cell(latency=1)


def test_report_merges_devices_and_rejects_foreign_files(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _schema.write_json(_fake_run("laptop", 1.0), a)
    _schema.write_json(_fake_run("Pi 5", 4.0), b)
    assert report.main([str(a), str(b), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "laptop p50 ms" in md and "Pi 5 p50 ms" in md
    row = next(line for line in md.splitlines() if line.startswith("| m_int8.tflite"))
    assert "| 1 |" in row and "| 4 |" in row
    assert (tmp_path / "rep" / "report.csv").read_text().count("m_int8") == 4  # 2 cells x 2 devices
    foreign = tmp_path / "other.json"
    foreign.write_text(
        json.dumps({"benchmarks": [{"name": "x", "stats": {}}]})
    )  # pytest-benchmark-like
    capsys.readouterr()
    assert report.main([str(foreign)]) == 2
    assert "not an edgeloc benchmark results file" in capsys.readouterr().out
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**_fake_run("x", 1.0), "schema_version": 0}))
    assert report.main([str(old)]) == 2
    assert "rerun python -m benchmarks.latency" in capsys.readouterr().out


# ---- eval sets and baselines -----------------------------------------------------------------


def test_lean_reader_reads_csv_and_voc(tmp_path, csv_set):
    data = _evalset.read_folder(csv_set)
    assert len(data) == 4 and data.labels[0] == "object"
    np.testing.assert_allclose(data.boxes[0], [10 / 64, 8 / 48, 40 / 64, 36 / 48], atol=1e-6)
    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    cv2.imwrite(str(voc / "images" / "a.jpg"), np.zeros((40, 80, 3), np.uint8))
    (voc / "annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>0</width><height>0</height></size>"
        "<object><name>cat</name><bndbox><xmin>8</xmin><ymin>4</ymin><xmax>40</xmax><ymax>20</ymax>"
        "</bndbox></object></annotation>"
    )
    data = _evalset.read_folder(voc)
    np.testing.assert_allclose(
        data.boxes[0], [0.1, 0.1, 0.5, 0.5], atol=1e-6
    )  # decoded size, not 0x0
    with pytest.raises(ValueError, match="neither a VOC"):
        _evalset.read_folder(tmp_path / "voc" / "images")


def test_haar_baseline_cell_runs(csv_set, tmp_path):
    data = _evalset.read_folder(csv_set)
    data.save(tmp_path / "eval.npz")
    out = run_cell(
        {
            "runner": "haar",
            "variant": "haar_face",
            "backend": "opencv",
            "threads": 1,
            "warmup": 0,
            "runs": 2,
            "eval_path": str(tmp_path / "eval.npz"),
        }
    )
    assert out["status"] == "ok", out
    assert out["latency_ms"]["n"] == 2 and out["n_eval"] == 4
    assert 0.0 <= out["mean_iou"] <= 1.0  # white squares are no faces: usually 0
    bad = run_cell(
        {"runner": "haar", "variant": "haar_dog", "backend": "opencv", "warmup": 0, "runs": 1}
    )
    assert bad["status"] == "error" and "haar_cat" in bad["reason"]


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_run_dir_end_to_end(tiny_run, tmp_path):
    out = tmp_path / "res.json"
    code = latency.main(
        [
            "--model",
            str(tiny_run),
            *FAST,
            "--formats",
            "tflite,onnx,keras",
            "--eval-size",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    res = _schema.load(out)  # validates the schema
    assert res["eval"]["name"].startswith("cat-on-scenes:test") and res["eval"]["n"] == 4
    ok = _cells(res, status="ok")
    assert {(c["variant"], c["backend"]) for c in ok} >= {
        ("model.keras", "keras"),
        ("model_fp32.tflite", "ai_edge_litert"),
        ("model_int8.tflite", "ai_edge_litert"),
        ("model_fp32.onnx", "onnxruntime"),
        ("model_int8.onnx", "onnxruntime"),
    }
    for c in ok:
        assert c["latency_ms"]["n"] == 5 and c["latency_ms"]["p50"] > 0 and c["threads"] == 1
        assert c["load_ms"] > 0 and c["first_ms"] > 0 and c["peak_rss_mb"] > 0 and c["n_eval"] == 4
        assert c["macs"] > 0 and c["est_pi4_ms"][0] < c["est_pi4_ms"][1]
    # One architecture, counted from Keras, TFLite and ONNX.
    assert len({c["macs"] for c in ok}) == 1
    # Each cell's own memory, not its parent's (this pytest process holds TensorFlow).
    lite = _cells(res, variant="model_int8.tflite", status="ok")[0]
    assert lite["base_rss_mb"] <= lite["peak_rss_mb"] < 400
    keras_iou = _cells(res, variant="model.keras", status="ok")[0]["mean_iou"]
    assert _cells(res, variant="model_fp32.tflite", status="ok")[0]["mean_iou"] == pytest.approx(
        keras_iou, abs=2e-3
    )
    assert _cells(res, variant="model_int8.tflite")[0]["precision"] == "int8"
    gpu = _cells(res, provider="CUDAExecutionProvider")
    assert gpu and all(c["status"] == "skipped" and c["reason"] for c in gpu)
    header = out.with_suffix(".csv").read_text().splitlines()[0].split(",")
    assert header == list(_schema.CSV_COLUMNS)
    assert "| model_int8.tflite | ai_edge_litert | 1 | ok |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_broken_models_become_error_cells_and_the_run_goes_on(
    tiny_run, models_dir, csv_set, tmp_path
):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    res = latency.run(
        models_dir,
        threads="1",
        runs=3,
        warmup=1,
        eval_dir=str(csv_set),
        baseline="none",
        backends="ai_edge_litert,onnxruntime",
        video=str(video),
        video_frames=6,
        extra=[str(tiny_run / "model_fp32.tflite")],
        max_iou_drop=1.0,
    )
    broken = _cells(res, variant="broken.tflite")
    cut = _cells(res, variant="cut.onnx", provider="CPUExecutionProvider")
    assert broken[0]["status"] == "error" and "TFLite" in broken[0]["reason"]
    assert cut[0]["status"] == "error" and "ONNX" in cut[0]["reason"]
    good = _cells(res, variant="model_int8.tflite")[0]
    assert good["status"] == "ok" and good["n_eval"] == 4 and res["eval"]["name"].startswith("csv:")
    assert (
        good["pipeline"]["frames"] == 6 and good["pipeline"]["fps"] > 0
    )  # 3 warm-up frames excluded
    assert good["pipeline"]["fps"] <= good["pipeline"]["fps_no_decode"]
    extra = _cells(res, kind="extra")
    assert [c["variant"] for c in extra] == ["model_fp32.tflite"] and extra[0]["status"] == "ok"


def test_accuracy_check_compares_with_the_float_model_of_the_same_family():
    def cell(variant, fmt, precision, iou):
        return _schema.new_cell(
            variant=variant,
            kind="model",
            format=fmt,
            precision=precision,
            backend="x",
            status="ok",
            mean_iou=iou,
            latency_ms={},
        )

    cells = [
        cell("model.keras", "keras", "fp32", 0.80),
        cell("model_int8.tflite", "tflite", "int8", 0.75),
        cell("model_fp16.tflite", "tflite", "fp16", 0.79),
        cell("cat_int8.tflite", "tflite", "int8", 0.1),
        cell("cat_int8.onnx", "onnx", "int8", 0.5),
    ]
    _matrix.finish(cells, {}, max_iou_drop=0.02)
    assert [c["status"] for c in cells] == ["ok", "accuracy_failed", "ok", "ok", "ok"]
    assert cells[1]["iou_drop"] == pytest.approx(0.05) and "model.keras" in cells[1]["reason"]
    assert cells[3]["iou_drop"] is None  # int8 files only: no float model to judge against


def test_user_errors_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no models here")
    (empty / "notes.json").write_text("{}")  # e.g. a model's contract sidecar: an input
    fifo = tmp_path / "fifo.tflite"
    os.mkfifo(fifo)
    run = tmp_path / "run"  # one model file: its sidecar and its run's config.json are inputs too
    run.mkdir()
    for name in ("m.onnx", "m.json", "config.json"):
        (run / name).write_text("{}")
    data = tmp_path / "data"  # an eval CSV folder: a second .csv there broke the data set
    data.mkdir()
    cases = [
        (["--model", str(run / "m.onnx"), "--out", str(run / "m")], "would overwrite the input"),
        (["--model", str(run / "m.onnx"), "--out", str(run / "config.json")], "would overwrite the input"),
        (["--model", str(empty), "--eval-dir", str(data), "--out", str(data / "sub" / "r.json")],
         "is inside the eval data"),
        (["--model", str(empty)], "nothing to benchmark"),
        (["--model", str(tmp_path / "missing")], "not found"),
        (["--model", str(empty), "--threads", "two"], "--threads"),
        (["--model", str(empty / "notes.txt")], "not a .tflite"),
        (["--model", str(empty), "--out", str(empty / "notes.txt")], "would overwrite the input"),
        (["--model", str(empty), "--backends", "ort,tflite_runtime"], "unknown backend 'ort'"),
        (["--model", str(empty), "--seconds", "nan"], "--seconds"),  # timed cells to the run cap
        (["--model", str(empty), "--cell-timeout", "nan"], "--cell-timeout"),  # was a traceback
        (["--model", str(empty), "--eval-size", "-1"], "--eval-size must be at least 1"),  # exit 0
        (["--model", str(fifo)], "is not a file or folder"),  # NotADirectoryError traceback
        (["--model", str(empty), "--threads", "100000"], "thread counts 1-256"),  # 100000 OS threads
        (["--model", str(empty), "--video", str(fifo)], "--video"),  # said "not found"
        # 0 frames read no frame: every cell failed with "fewer than 4 frames"
        (["--model", str(empty), "--video", str(empty / "notes.txt"), "--video-frames", "0"],
         "--video-frames must be at least 1"),
        (["--model", str(empty), "--seconds", "700"], "below --cell-timeout"),  # every cell abandoned
        (["--model", str(empty), "--runs", "1000000000000"], "--runs 1000000000000 is more than"),
        (["--model", str(empty), "--repeat", "1000000"], "--repeat 1000000 is more than"),
        # found after measuring, these were tracebacks that threw the measurements away
        (["--model", str(empty), "--out", str(empty / "notes.txt" / "r.json")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert latency.main(argv + ["--no-plots"]) == 2, argv
        out = " ".join(capsys.readouterr().out.split())
        assert message in out, (argv, out)
        if "backend" in message:  # the valid names come from runtime.BACKENDS
            assert all(name in out for name in ("ai_edge_litert", "onnxruntime", "keras"))
    assert (empty / "notes.json").read_text() == "{}"
    assert all((run / name).read_text() == "{}" for name in ("m.json", "config.json"))
    assert not list(data.iterdir())
    results = tmp_path / "rep" / "report.csv"  # a results file where the report would go
    results.parent.mkdir()
    _schema.write_json(_fake_run("laptop", 1.0), results)
    assert report.main([str(results), "--out", str(results.parent), "--no-plots"]) == 2
    assert "would overwrite the input" in " ".join(capsys.readouterr().out.split())
    assert json.loads(results.read_text())["device"]["name"] == "laptop"
    assert report.main([str(results), "--out", str(empty / "notes.txt"), "--no-plots"]) == 2
    assert "is a file; pass a folder" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_missing_eval_source_and_video_are_user_errors(models_dir, tmp_path, capsys):
    for argv, message in (
        (["--eval-dir", str(tmp_path / "nope")], "not found"),
        (["--eval", "no-such-source"], "no-such-source"),
        (["--eval", "blobs", "--eval-dir", str(tmp_path)],
         "--eval blobs is built in and reads no --eval-dir"),
        (["--video", str(tmp_path / "x.mp4")], "--video"),
    ):
        capsys.readouterr()
        assert latency.main(["--model", str(models_dir), *FAST, *argv]) == 2
        assert message in capsys.readouterr().out


_BLOCKER = """
import sys
import tempfile
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib",
                                  "skimage", "sklearn"):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.slow
def test_profile_pi_runs_with_only_the_lean_runtime(models_dir, csv_set, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCKER))  # applies to every cell too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = tmp_path / "pi.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.latency",
        "--profile",
        "pi",
        "--model",
        str(models_dir),
        "--runs",
        "3",
        "--warmup",
        "1",
        "--baseline",
        "none",
        "--eval-dir",
        str(csv_set),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = _schema.load(out)
    ok = _cells(res, status="ok")
    assert {(c["variant"], c["threads"]) for c in ok} == {
        ("model_int8.tflite", 4),
        ("model_int8.tflite", 1),
    }
    assert all(c["backend"] == "ai_edge_litert" and c["n_eval"] == 4 for c in ok)
    assert ok[0]["macs"] > 0  # counted from the TFLite graph, without TensorFlow
    assert not list(tmp_path.glob("*.png"))  # no matplotlib: no plots, no failure
    assert res["device"]["fingerprint"]["libraries"].get("ai-edge-litert")


def test_runtime_overhead_reports_every_stage_load_and_memory(runtime_models, tmp_path, capsys):
    from benchmarks import runtime_overhead

    models = [runtime_models["u8"], runtime_models["onnx_i8"]]
    started = time.time()
    out = tmp_path / "overhead.json"
    args = ["--frames", "6", "--rss-frames", "300", "--json", str(out)]
    assert runtime_overhead.main([a for m in models for a in ("--model", str(m))] + args) == 0
    data = json.loads(out.read_text())
    rows = data["per_frame_us"]
    assert [Path(r["model"]).name for r in rows] == [m.name for m in models]
    for r in rows:
        assert r["samples"] == 6 and r["input"] == "32x32"  # 6 frames per measurement kind
        assert all(r[k] > 0 for k in ("decode", "pre", "bare", "full", "floor", "ratio_floor"))
        assert r["ratio_sequential"] == pytest.approx(r["full"] / r["bare"])
    assert rows[1]["backend"] == "onnxruntime/CPUExecutionProvider"
    assert all(load["heavy_modules"] == [] for load in data["load"].values())  # no TF loaded
    rss = data["rss"][str(models[0])]
    assert rss["frames"] == 300 and 10 < rss["rss_max_mb"] < 1000
    assert "| tiny_u8.tflite | ai_edge_litert/CPU | 32x32 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="takes int8 pixels"):  # the bare call feeds uint8
        runtime_overhead.main(["--model", str(runtime_models["i8"]), "--rss-frames", "0"])
    model = models[0].read_bytes()  # --json may not land on a model (it did, unchecked)
    assert runtime_overhead.main(["--model", str(models[0]), "--json", str(models[0])]) == 2
    assert "--json would overwrite the input" in " ".join(capsys.readouterr().err.split())
    assert models[0].read_bytes() == model
    assert not [p for p in Path(tempfile.gettempdir()).glob("edgeloc-overhead-*") if p.stat().st_mtime > started]
