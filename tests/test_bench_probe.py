"""Hostile flags, inputs and outputs of the benchmark CLIs and tools.pi.arm64_check: each is
refused in one line (exit 2) before any long work, never a traceback, a hang, a results
file read as something it is not, or an output written over an input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _schema, _timing, abuse, demo_accuracy, gpu_check, report, runtime_overhead
from runtime.models import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]
MODEL = MODELS_DIR / "cat_int8.onnx"


def _one_line(capsys: pytest.CaptureFixture, *, stream: str = "out") -> str:
    """The captured error, whitespace joined (rich wraps at 80 columns); no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return " ".join(getattr(captured, stream).split())


def _run(device: str = "laptop") -> dict:
    cell = _schema.new_cell(variant="m_int8.tflite", kind="model", format="tflite", precision="int8",
                            backend="ai_edge_litert", threads=1, status="ok",
                            latency_ms=_timing.summarize(np.full(10, 1.0)), mean_iou=0.8)
    return {"schema": _schema.SCHEMA, "schema_version": _schema.SCHEMA_VERSION, "created": "now",
            "device": {"name": device, "fingerprint": {}}, "settings": {},
            "eval": {"name": None, "n": 0, "reason": "none"}, "cells": [cell]}


# ---- benchmarks.report --------------------------------------------------------------------


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(device="laptop"), "'device' must be an object"),
    (lambda d: d["device"].pop("name"), "'device' must be an object"),
    (lambda d: d["device"].update(fingerprint="x"), "'fingerprint' must be an object"),
    (lambda d: d["cells"][0].update(latency_ms={}), "cell 0 has a bad latency_ms.p50"),
    (lambda d: d["cells"][0]["latency_ms"].update(p50="fast"), "bad latency_ms.p50"),
    (lambda d: d["cells"][0]["latency_ms"].update(quantiles=[1.0]), "bad latency_ms.quantiles"),
    (lambda d: d["cells"][0].update(variant=None), "cell 0 has a bad variant"),
    (lambda d: d["cells"][0].update(threads="4"), "cell 0 has a bad threads"),
    (lambda d: d["cells"][0].update(est_pi4_ms=5), "cell 0 has a bad est_pi4_ms"),
    (lambda d: d["cells"][0].update(mean_iou="high"), "cell 0 has a bad mean_iou"),
])
def test_report_refuses_damaged_results_files(tmp_path, capsys, edit, message):
    # Each was a TypeError/KeyError traceback deep in the table or a plot, or text in the table.
    data = _run()
    edit(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert report.main([str(path), "--out", str(tmp_path / "rep"), "--no-plots"]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "rep").exists()


def test_report_refuses_nan_and_special_results_files(tmp_path, capsys):
    nan = tmp_path / "nan.json"  # the writer never writes NaN; matplotlib crashed on it
    nan.write_text(json.dumps(_run()).replace('"p50": 1.0', '"p50": NaN'))
    fifo = tmp_path / "fifo.json"  # reading it blocked forever
    os.mkfifo(fifo)
    for path, message in ((nan, "NaN is not JSON"), (fifo, "is not a regular file"),
                          (Path("/dev/zero"), "is not a regular file")):  # MemoryError
        assert report.main([str(path), "--out", str(tmp_path / "rep"), "--no-plots"]) == 2
        assert message in _one_line(capsys)


def test_report_out_folder_problems_are_one_line(tmp_path, capsys):
    good = tmp_path / "a.json"
    _schema.write_json(_run(), good)
    taken = tmp_path / "taken"
    (taken / "report.md").mkdir(parents=True)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for out, message in (("", "--out is empty"),  # wrote report.md into the current folder
                             (str(taken), "holds a folder report.md"),
                             (str(tmp_path / ("x" * 300)), "File name too long"),
                             ("/proc/self", "is not writable"),
                             (str(good / "sub"), "Not a directory")):
            assert report.main([str(good), "--out", out, "--no-plots"]) == 2, out
            assert message in _one_line(capsys), out
        assert not (tmp_path / "report.md").exists()
    finally:
        os.chdir(cwd)
    assert report.main([str(good), "--out", str(tmp_path / "ok"), "--no-plots"]) == 0
    assert (tmp_path / "ok" / "report.md").is_file()


# ---- benchmarks.runtime_overhead ----------------------------------------------------------


def test_runtime_overhead_checks_every_model_and_json_before_measuring(tmp_path, capsys):
    damaged = tmp_path / "cut.tflite"
    damaged.write_bytes((MODELS_DIR / "cat_int8.tflite").read_bytes()[:3000])
    base = ["--frames", "1", "--rss-frames", "0"]
    # The second model was found damaged only after the first was measured (a traceback).
    assert runtime_overhead.main(["--model", str(MODEL), "--model", str(damaged), *base]) == 2
    assert "damaged TFLite model" in _one_line(capsys, stream="err")
    # A --json in a missing folder was a traceback after the whole measurement.
    json_out = tmp_path / "missing" / "o.json"
    assert runtime_overhead.main(["--model", str(MODEL), *base, "--json", str(json_out)]) == 2
    assert "does not exist" in _one_line(capsys, stream="err")
    assert runtime_overhead.main(["--model", str(MODEL), *base, "--threads", "100000"]) == 2
    assert "threads must be between 1 and" in _one_line(capsys, stream="err")


def test_runtime_overhead_memory_slope_is_never_nan(monkeypatch):
    # Under ~1500 frames there are too few samples for a slope: it was NaN in the JSON.
    monkeypatch.setattr(runtime_overhead, "_fresh", lambda *a: {
        "samples": [[1, 0.0, 50.0], [250, 1.0, 51.0]], "summary": {"frames": 300, "fps": 90.0}})
    row = runtime_overhead.rss_run(MODEL, Path("clip.mp4"), 300, 1)
    assert row["growth_mb_per_1000_frames"] is None
    json.dumps(row, allow_nan=False)
    assert "too few frames" in runtime_overhead._growth(None)


# ---- benchmarks.gpu_check -----------------------------------------------------------------


def _fake_gpu(tmp_path: Path) -> dict[str, str]:
    """PATH with an nvidia-smi that lists one GPU; the check then goes on to its setup."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA Test GPU, 550.0, 81920 MiB'\n")
    smi.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("flags, message", [
    (["--out", "FILE"], "is a file, not a folder"),
    (["--venv", "FILE/venv"], "is a file, not a folder"),
    (["--venv", "DATA"], "is a folder that is not a venv"),  # pip installed into it
])
def test_gpu_check_bad_out_or_venv_stops_before_installing(tmp_path, flags, message):
    env = _fake_gpu(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "photo.jpg").write_text("x")
    subst = {"FILE": str(tmp_path / "file"), "DATA": str(tmp_path / "data")}
    argv = [next((a.replace(k, v) for k, v in subst.items() if k in a), a) for a in flags]
    if "--venv" not in flags:
        argv += ["--venv", str(tmp_path / "venv")]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "venv").exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["photo.jpg"]


def test_gpu_check_failed_install_is_one_line_and_stale_cells_are_not_reported(tmp_path):
    with pytest.raises(gpu_check.SetupError, match="failed .exit 1"):
        gpu_check.ensure_venv(tmp_path / "venv", python=shutil.which("false"))
    # A latency step that fails must not report the cells an earlier check left behind.
    out = tmp_path / "latency.json"
    out.write_text(json.dumps({"cells": [{"variant": "old", "status": "ok"}]}))
    step = gpu_check.latency(MODELS_DIR, tmp_path / "none.keras", out, 30,
                             shutil.which("false"))
    assert step["status"].startswith("exit 1") and step["cells"] == []


# ---- benchmarks.abuse ---------------------------------------------------------------------


def test_abuse_flags_and_outputs_are_checked_before_the_run(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    before = model.read_bytes()
    damaged = tmp_path / "bad.onnx"
    damaged.write_bytes(b"hello")
    fuzz = ["--skip-findings", "--mutants", "1"]
    cases = [
        # The report was written over the model it had damaged copies of.
        ([*fuzz, "--model", str(model), "--markdown", str(model)], "--markdown would overwrite"),
        (["--skip-fuzz", "--json", str(MODELS_DIR / "cat_int8.tflite")], "--json would overwrite"),
        ([*fuzz, "--model", str(model), "--json", str(tmp_path / "no" / "r.json")], "does not exist"),
        ([*fuzz, "--model", str(model), "--json", str(tmp_path / "r"), "--markdown",
          str(tmp_path / "r")], "both"),
        ([*fuzz, "--model", str(damaged)], "empty or truncated"),  # a protobuf traceback
        ([*fuzz, "--model", str(tmp_path / "missing.onnx")], "not found"),
    ]
    for argv, message in cases:
        assert abuse.main(argv) == 2, argv
        assert message in _one_line(capsys, stream="err"), argv
    assert model.read_bytes() == before
    for argv, message in ((["--skip-fuzz", "--skip-findings"], "nothing to run"),
                          ([*fuzz, "--mutants", "0"], "--mutants must be at least 1"),
                          (["--skip-fuzz", "--header-timeout", "inf"], "--header-timeout")):
        with pytest.raises(SystemExit) as exit_:
            abuse.main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


# ---- tools.pi.arm64_check -----------------------------------------------------------------


def test_arm64_check_flags_and_paths_are_checked_before_building(tmp_path, capsys):
    from tools.pi import arm64_check

    damaged = tmp_path / "bad.onnx"
    damaged.write_bytes(b"hello")
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    model = MODELS_DIR / "cat_int8.onnx"
    base = ["--models", str(model), "--cache", str(tmp_path / "cache")]
    cases = [
        (["--iou-min", "nan"], "--iou-min and --score-tol must be within 0-1"),
        (["--score-tol", "inf"], "--iou-min and --score-tol must be within 0-1"),
        (["--latency-runs", "-1"], "--latency-runs must be 0-10000"),
        (["--out", str(model)], "--out would overwrite the input"),  # after the whole check
        (["--markdown", str(model)], "--markdown would overwrite the input"),
        (["--out", str(tmp_path)], "is a folder"),
        (["--cache", str(afile)], "is a file, not a folder"),  # a NotADirectoryError traceback
        (["--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.json")], "both"),
    ]
    for flags, message in cases:
        assert arm64_check.main([*base, *flags]) == 2, flags
        assert message in _one_line(capsys), flags
    for models, message in (([str(damaged)], "empty or truncated"), ([""], "empty name")):
        assert arm64_check.main(["--models", *models, "--cache", str(tmp_path / "c")]) == 2
        assert message in _one_line(capsys)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "c").exists()


# ---- export_accuracy, demo_accuracy, generalization: checked before anything trains ----------


def test_export_accuracy_never_exports_into_the_run_folder(tmp_path, capsys, monkeypatch):
    from benchmarks import export_accuracy

    # main() turns oneDNN off for the TensorFlow it imports: here it stays as the rest of
    # the suite has it, so the order of tests does not decide later models' numerics.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"))

    run = tmp_path / "demo"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not loaded: the flags are checked first")
    (run / "model_int8.tflite").write_bytes(b"the run's own gated export")
    for flags, message in ((["--out", str(tmp_path)], "into that run's own folder"),
                           (["--out", str(run / "model.keras")], "is a file, not a folder"),
                           (["--verify-size", "0"], "--verify-size must be at least 1"),
                           (["--calib-size", "-3"], "--calib-size must be at least 1")):
        assert export_accuracy.main(["--run", str(run), *flags]) == 2, flags
        assert message in _one_line(capsys), flags
    assert (run / "model_int8.tflite").read_bytes() == b"the run's own gated export"
    # Two runs of one name: the first one's variants went into OUT/demo, the second run itself.
    other = tmp_path / "x" / "demo"
    other.mkdir(parents=True)
    (other / "model.keras").write_bytes(b"not loaded")
    assert export_accuracy.main(["--run", str(other), "--run", str(run), "--out", str(tmp_path)]) == 2
    assert "into the folder of --run" in _one_line(capsys)


def test_demo_accuracy_checks_out_and_data_before_training(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    for flags, message in ((["--out", str(afile)], "is a file, not a folder"),  # a traceback
                           (["--cats-dir", str(empty)], "no VOC annotation"),  # after 10 min
                           (["--faces-dir", str(empty)], "0 CSV files")):
        argv = [*flags] if "--out" in flags else [*flags, "--out", str(tmp_path / "out")]
        assert demo_accuracy.main(argv) == 2, flags
        assert message in _one_line(capsys), flags
    assert not (tmp_path / "out").exists()


def test_generalization_checks_models_and_out_before_training(tmp_path, capsys, write_image):
    from benchmarks.generalization import main
    from tests.test_generalization import faces_folder

    faces = faces_folder(tmp_path / "faces", write_image, n=6)
    damaged = tmp_path / "old.tflite"
    damaged.write_bytes((MODELS_DIR / "cat_int8.tflite").read_bytes()[:3000])
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    out = ["--out", str(tmp_path / "out")]
    for argv, message in (
        (out, "nothing to measure"),  # ran nothing and said "done"
        (["--faces-dir", str(faces), "--default-model", str(MODEL), *out], "pass --cats-dir"),
        (["--faces-dir", str(faces), "--baseline", "nope", *out], "--baseline 'nope'"),
        (["--faces-dir", str(faces), "--out", str(afile)], "is a file, not a folder"),
    ):
        assert main(argv) == 2, argv
        assert message in _one_line(capsys), argv
    assert not (tmp_path / "out").exists()
    from benchmarks import generalization

    class Args:  # a damaged --default-model was found after every run had trained
        cats_dir, faces_dir, default_model, default_before = str(faces), None, str(MODEL), str(damaged)
        default_face_model = None
        out = str(tmp_path / "out")

    from rich.console import Console

    con = Console(width=300)
    with con.capture() as cap:
        assert generalization.bad_inputs(Args, con)
    assert "damaged TFLite model" in cap.get()
    # The face model is scored on the real faces: without them it is refused, and a damaged
    # one is found before anything trains, as the cat model is.
    Args.default_model = Args.default_before = None
    Args.default_face_model = str(damaged)
    with con.capture() as cap:
        assert generalization.bad_inputs(Args, con)
    assert "--default-face-model is scored on the real faces; pass --faces-dir" in cap.get()
    Args.faces_dir = str(faces)
    with con.capture() as cap:
        assert generalization.bad_inputs(Args, con)
    assert "damaged TFLite model" in cap.get()
    Args.default_face_model = str(MODELS_DIR / "face_int8.tflite")
    with con.capture() as cap:
        assert not generalization.bad_inputs(Args, con), cap.get()
