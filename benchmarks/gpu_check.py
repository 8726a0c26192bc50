"""One command for an NVIDIA GPU box: install the ``gpu`` extra, measure, write one report.

    make gpu-check                       # or: python -m benchmarks.gpu_check
    python -m benchmarks.gpu_check --out results/gpu-check --venv .venv-gpu

Steps (budget: under 8 minutes on a fresh machine with a fast network):

1. find the GPU (``nvidia-smi``, else ``/proc/driver/nvidia/gpus``); without one, stop at
   once with a one-line message (exit 2);
2. create ``--venv`` and ``pip install -e .[gpu]`` into it (onnxruntime-gpu and TensorFlow
   with its CUDA wheels; skipped when the venv is current), then rerun step 3 inside it;
3. in that venv: train the demo model for 2 short epochs with ``--strategy mirrored`` and
   mixed precision, and again without mixed precision (training images/s of each); run
   the latency matrix (``benchmarks.latency``) on the default models and the trained Keras
   model with the CPU, CUDA and TensorRT providers and TensorFlow on the GPU;
4. write ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (and the latency files beside).

A provider that does not start (a session that falls back to CPU) is a skipped cell with
its reason, never a GPU figure. Steps 1-2 use the standard library only: they run with the
machine's python3 before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 8 * 60
# Training check: the demo architecture, a GPU-sized global batch, short epochs.
TRAIN_FLAGS = ["--preset", "demo", "--epochs", "2", "--steps-per-epoch", "60", "--batch-size", "256",
               "--train-size", "4096", "--strategy", "mirrored", "--no-progress", "--overwrite"]
QUICK_FLAGS = ["--data", "blobs", "--image-size", "32", "--epochs", "2", "--steps-per-epoch", "3",
               "--batch-size", "16", "--train-size", "64", "--head-units", "16", "--strategy",
               "mirrored", "--no-progress", "--overwrite"]
LATENCY_FLAGS = ["--threads", "1", "--warmup", "20", "--baseline", "none", "--no-plots"]
NO_GPU = ("no NVIDIA GPU found (nvidia-smi lists none and /proc/driver/nvidia is absent): run "
          "`make gpu-check` on a machine with an NVIDIA GPU and its driver")


def find_gpus() -> list[str]:
    """NVIDIA GPUs of this machine by name; [] when there is none (or no driver)."""
    from benchmarks._fingerprint import gpus

    found = [g["name"] for g in gpus()]
    if found:
        return found
    folder = Path("/proc/driver/nvidia/gpus")
    if folder.is_dir():
        return [f"NVIDIA GPU {p.name}" for p in sorted(folder.iterdir())]
    return []


# ------------------------------------------------------------------------------ the venv
def ensure_venv(venv: Path, python: str = sys.executable) -> Path:
    """``venv`` with the ``gpu`` extra installed (reinstalled when pyproject.toml changed)."""
    stamp = venv / ".gpu-extra"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    bin_python = venv / "bin" / "python"
    if bin_python.is_file() and stamp.is_file() and stamp.read_text() == want:
        return bin_python
    for cmd in ([python, "-m", "venv", str(venv)],
                [str(bin_python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                [str(bin_python), "-m", "pip", "install", "-q", "-e", f"{REPO}[gpu]"]):
        code = subprocess.run(cmd).returncode
        if code:  # its own output (pip's network error, say) is just above
            raise SetupError(f"`{' '.join(cmd[1:4])}` for --venv {venv} failed (exit {code}, "
                             "above); fix that (network, disk space) and run the check again")
    stamp.write_text(want)
    return bin_python


class SetupError(Exception):
    """Steps 1-2 cannot go on (a bad --out or --venv, an install that failed): one line, exit 2."""


def check_paths(out: Path, venv: Path) -> None:
    """--out and --venv before minutes of installing (stdlib only: numpy may not exist yet)."""
    for flag, path in (("--out", out), ("--venv", venv)):
        file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if file is not None:
            raise SetupError(f"{flag} {path}: {file} is a file, not a folder; pass a folder")
    if venv.resolve() in (REPO, *REPO.parents) or (
            venv.is_dir() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file()):
        raise SetupError(f"--venv {venv} is a folder that is not a venv; pass a new folder "
                         "name (default .venv-gpu): the gpu extra is installed there")


# ------------------------------------------------------------------------------ the checks
def _run(cmd: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run a step; its output goes to ``log``; returns seconds and status."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1), env=env,
                              cwd=REPO)
    except subprocess.TimeoutExpired as err:
        log.write_text(f"$ {' '.join(cmd)}\n{err.stdout or ''}\n{err.stderr or ''}")
        return {"status": "timeout", "seconds": round(time.perf_counter() - t0, 1)}
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    return {"status": "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {tail[:200]}",
            "seconds": round(time.perf_counter() - t0, 1)}


def environment() -> dict[str, Any]:
    """What the GPU stack sees: TensorFlow's GPUs and ONNX Runtime's providers."""
    info: dict[str, Any] = {"gpus": find_gpus()}
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["tensorflow_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError as err:
        info["tensorflow"] = f"not importable: {err}"
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as err:
        info["onnxruntime"] = f"not importable: {err}"
    return info


def training(run_dir: Path, mixed: bool, quick: bool, timeout: float, python: str) -> dict[str, Any]:
    """2 short epochs; images/s of the second (the first includes tracing and the cache)."""
    flags = QUICK_FLAGS if quick else TRAIN_FLAGS
    flag = "--mixed-precision" if mixed else "--no-mixed-precision"
    history = run_dir / "history.json"
    history.unlink(missing_ok=True)  # an earlier check's figures, never reported as this one's
    step = _run([python, "-m", "train", *flags, flag, "--out", str(run_dir)], timeout,
                run_dir.with_suffix(".log"))
    out = {"mixed_precision": mixed, **step}
    if history.is_file():
        rows = json.loads(history.read_text())
        config = json.loads((run_dir / "config.json").read_text())["training"]
        last = rows[-1]
        out.update(epochs=len(rows), epoch_seconds=[r["seconds"] for r in rows],
                   images_per_s=round(config["steps_per_epoch"] * config["batch_size"] / last["seconds"], 1),
                   val_iou=last.get("val_box_iou"), batch_size=config["batch_size"])
    return out


def latency(models: Path, keras_model: Path, out: Path, timeout: float, python: str,
            quick: bool = False) -> dict[str, Any]:
    """The latency matrix: every provider and device on the default models + the Keras model."""
    runs = ["--runs", "20", "--eval-size", "10"] if quick else ["--runs", "200", "--eval-size", "50"]
    cmd = [python, "-m", "benchmarks.latency", "--model", str(models), *LATENCY_FLAGS, *runs,
           "--out", str(out)]
    if keras_model.is_file():
        cmd += ["--extra", str(keras_model)]
    out.unlink(missing_ok=True)  # an earlier check's cells, never reported as this one's
    step = _run(cmd, timeout, out.with_suffix(".log"))
    cells = []
    if out.is_file():
        for c in json.loads(out.read_text())["cells"]:
            lat = c.get("latency_ms") or {}
            cells.append({k: c.get(k) for k in ("variant", "format", "precision", "backend", "provider",
                                                "device", "status", "reason", "mean_iou")}
                         | {"p50_ms": lat.get("p50"), "p90_ms": lat.get("p90")})
    return {**step, "cells": cells}


def run_checks(out: Path, *, quick: bool = False, python: str = sys.executable,
               budget: float = BUDGET_S) -> dict[str, Any]:
    """Steps 3-4 (inside the GPU venv): environment, training, latency; returns the report."""
    from runtime.models import MODELS_DIR  # not at the top: steps 1-2 run before numpy exists

    t0 = time.perf_counter()
    left = lambda: budget - (time.perf_counter() - t0)  # noqa: E731
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick,
                              "environment": environment(), "training": []}
    # Training takes at most half of what is left, each run half of that share.
    for mixed in (True, False):
        report["training"].append(training(out / f"train-{'mixed' if mixed else 'fp32'}", mixed,
                                           quick, left() / (4 if mixed else 2), python))
    keras_model = out / "train-fp32" / "model.keras"
    report["latency"] = latency(MODELS_DIR, keras_model, out / "latency.json", left() - 10, python,
                                quick)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


# ------------------------------------------------------------------------------ the report
def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: environment, training images/s, latency per variant/provider."""
    env = report["environment"]
    lines = ["# GPU check", "",
             f"- GPUs: {', '.join(env.get('gpus') or ['none'])}",
             f"- TensorFlow {env.get('tensorflow')}: {', '.join(env.get('tensorflow_gpus') or ['no GPU'])}",
             f"- ONNX Runtime {env.get('onnxruntime')}: {', '.join(env.get('onnxruntime_providers') or [])}",
             f"- total {report.get('seconds')} s{' (quick CPU smoke run)' if report.get('quick') else ''}",
             "", "## Training (demo model, 2 epochs, --strategy mirrored)", "",
             "| mixed precision | batch | images/s (epoch 2) | epoch seconds | val IoU | status |",
             "|---|---:|---:|---|---:|---|"]
    for t in report["training"]:
        iou = f"{t['val_iou']:.3f}" if t.get("val_iou") is not None else "-"
        lines.append(f"| {'on' if t['mixed_precision'] else 'off'} | {t.get('batch_size', '-')} | "
                     f"{t.get('images_per_s', '-')} | {t.get('epoch_seconds', '-')} | {iou} | {t['status']} |")
    lines += ["", "## Latency (batch 1)", "",
              "| variant | backend | provider | device | p50 ms | p90 ms | mean IoU | status |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for c in report["latency"]["cells"]:
        status = c["status"] if c["status"] == "ok" else f"{c['status']}: {c.get('reason') or ''}"
        num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(f"| {c['variant']} | {c['backend']} | {c.get('provider') or '-'} | {c['device']} | "
                     f"{num(c.get('p50_ms'), '.3f')} | {num(c.get('p90_ms'), '.3f')} | "
                     f"{num(c.get('mean_iou'), '.3f')} | {status} |")
    if report["latency"].get("status") != "ok":
        lines.append(f"\nlatency run: {report['latency'].get('status')}")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``out/gpu_check.json`` and ``out/gpu_check.md``, each written atomically."""
    from runtime import atomic

    out.mkdir(parents=True, exist_ok=True)
    return [atomic.write_json(out / "gpu_check.json", report),
            atomic.write_text(out / "gpu_check.md", markdown(report))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/gpu-check", help="report folder (results/gpu-check)")
    p.add_argument("--venv", default=".venv-gpu", help="venv for the gpu extra (.venv-gpu)")
    p.add_argument("--_inside", action="store_true", help=argparse.SUPPRESS)  # step 3, in the venv
    p.add_argument("--_quick", action="store_true", help=argparse.SUPPRESS)  # tiny CPU smoke run
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args._quick:
        gpus = find_gpus()
        if not gpus:
            print(f"error: {NO_GPU}", file=sys.stderr)
            return 2
        print(f"GPU: {', '.join(gpus)}", flush=True)
    if args._inside or args._quick:
        report = run_checks(out, quick=args._quick)
        for path in write_report(report, out):
            print(f"wrote {path}")
        print(markdown(report))
        return 0 if all(t["status"] == "ok" for t in report["training"]) else 1
    t0 = time.perf_counter()
    try:
        check_paths(out, Path(args.venv))
        python = ensure_venv(Path(args.venv))
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"gpu extra installed in {args.venv} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return subprocess.run([str(python), "-m", "benchmarks.gpu_check", "--_inside", "--out", str(out)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode


if __name__ == "__main__":
    sys.exit(main())
