"""GPU inference and `make gpu-check` as far as a machine without a GPU can test them: the
one-line no-GPU exit, the report files, ONNX Runtime falling back to CPU with a warning
that says which provider ran, and (slow) the whole check as a small CPU smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from runtime.models import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]


def test_no_gpu_stops_at_once_with_one_line(tmp_path):
    if Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("this machine has an NVIDIA driver")
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(REPO)}  # no nvidia-smi on PATH
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path / "r"),
                           "--venv", str(tmp_path / "venv")], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no NVIDIA GPU found"), proc.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "r").exists()  # nothing installed


def test_report_files_from_results(tmp_path):
    report = {
        "created": "2026-05-01T00:00:00", "quick": False, "seconds": 312.5,
        "environment": {"gpus": ["NVIDIA H100 80GB HBM3"], "tensorflow": "2.21.0",
                        "tensorflow_gpus": ["/physical_device:GPU:0"], "onnxruntime": "1.31.1",
                        "onnxruntime_providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                  "CPUExecutionProvider"]},
        "training": [
            {"mixed_precision": True, "status": "ok", "batch_size": 256, "images_per_s": 9120.4,
             "epoch_seconds": [9.8, 1.7], "val_iou": 0.41},
            {"mixed_precision": False, "status": "timeout", "seconds": 120.0},
        ],
        "latency": {"status": "ok", "cells": [
            {"variant": "cat_int8.onnx", "backend": "onnxruntime", "provider": "CUDAExecutionProvider",
             "device": "gpu", "status": "ok", "reason": None, "p50_ms": 0.41, "p90_ms": 0.5, "mean_iou": 0.6},
            {"variant": "cat_int8.onnx", "backend": "onnxruntime", "provider": "TensorrtExecutionProvider",
             "device": "gpu", "status": "skipped", "reason": "TensorrtExecutionProvider did not initialise",
             "p50_ms": None, "p90_ms": None, "mean_iou": None},
        ]},
    }
    json_path, md_path = gpu_check.write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert "NVIDIA H100 80GB HBM3" in md and "| on | 256 | 9120.4 | [9.8, 1.7] | 0.410 | ok |" in md
    assert "| off | - | - | - | - | timeout |" in md
    assert "| cat_int8.onnx | onnxruntime | CUDAExecutionProvider | gpu | 0.410 | 0.500 | 0.600 | ok |" in md
    assert "skipped: TensorrtExecutionProvider did not initialise" in md
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_cuda_listed_but_unusable_falls_back_with_a_warning(monkeypatch):
    # onnxruntime-gpu lists CUDA on a machine without a usable GPU; the session falls back.
    import onnxruntime as ort

    from runtime import Localizer

    listed = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *listed])
    with pytest.warns(UserWarning, match="CUDAExecutionProvider did not start.*running on CPUExecutionProvider"):
        loc = Localizer.load(MODELS_DIR / "cat_int8.onnx", providers="cuda", threads=1)
    assert loc.provider == "CPUExecutionProvider"


@pytest.mark.slow
def test_quick_check_runs_every_step_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--_quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [t["mixed_precision"] for t in report["training"]] == [True, False]
    assert all(t["status"] == "ok" and t["images_per_s"] > 0 for t in report["training"])
    cells = {(c["variant"], c["provider"]): c for c in report["latency"]["cells"]}
    assert cells[("cat_int8.onnx", "CPUExecutionProvider")]["status"] == "ok"
    # No GPU here: the GPU cells are planned and skipped with the reason, never measured.
    gpu = [c for c in report["latency"]["cells"] if c["device"] == "gpu"]
    assert gpu and all(c["status"] == "skipped" and c["reason"] for c in gpu)
    assert any(c["format"] == "keras" and c["status"] == "ok" for c in report["latency"]["cells"])
    assert (tmp_path / "gpu_check.md").is_file() and (tmp_path / "latency.json").is_file()
