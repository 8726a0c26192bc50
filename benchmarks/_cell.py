"""One benchmark cell, run in its own process: ``python -m benchmarks._cell SPEC.json OUT.json``.

A fresh process per cell gives each cell its own peak-memory figure, thread pools set
before the engine starts, and isolation: a model that crashes the interpreter becomes an
error cell instead of ending the run.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks import _timing
from benchmarks._evalset import EvalSet
from benchmarks._runners import Runner, Skip, make_runner
from runtime.contract import all_finite, box_iou

log = logging.getLogger(__name__)

# Module to import first (timed as import_ms) per runner/backend.
_ENGINE_MODULES = {"keras": "tensorflow", "haar": "cv2"}


def _engine_module(spec: dict[str, Any]) -> str | None:
    if spec["runner"] != "runtime":
        return _ENGINE_MODULES.get(spec["runner"])
    from runtime import BACKENDS  # noqa: PLC0415

    entry = BACKENDS.get(spec["backend"])
    return entry.module if entry else None


def timing_image(path: str | None) -> np.ndarray:
    """The image whose preprocessed tensor every timed call gets (random pixels if none)."""
    if path:
        return np.load(path, allow_pickle=False)
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def accuracy(runner: Runner, evalset: EvalSet) -> dict[str, Any]:
    """Mean IoU and CorLoc@0.5 over the eval images that hold an object."""
    ious = []
    for image, box, label in zip(evalset.images, evalset.boxes, evalset.labels, strict=True):
        if label == "none" or (box[2] - box[0]) * (box[3] - box[1]) <= 0:
            continue
        pred = runner.box(image)
        if not all_finite(pred):  # the runtime's own rule: a non-finite answer is an error
            raise FloatingPointError("the model returned a non-finite box")
        ious.append(float(box_iou(pred, box)))
    if not ious:
        return {"n_eval": 0, "mean_iou": None, "corloc": None}
    arr = np.array(ious)
    return {
        "n_eval": int(arr.size),
        "mean_iou": round(float(arr.mean()), 4),
        "corloc": round(float((arr >= 0.5).mean()), 4),
    }


def pipeline(runner: Runner, video: str, max_frames: int, warmup: int = 3) -> dict[str, Any]:
    """End-to-end FPS on a video: decode + preprocess + model + postprocess, frame by frame."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise ValueError(f"cannot open video {video}")
    decode, process = [], []
    try:
        while len(process) < max_frames + warmup:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            runner.frame(frame)
            t2 = time.perf_counter()
            decode.append(t1 - t0)
            process.append(t2 - t1)
    finally:
        cap.release()
    dec, proc = np.array(decode[warmup:]) * 1e3, np.array(process[warmup:]) * 1e3
    if proc.size == 0:
        raise ValueError(f"video {video} has fewer than {warmup + 1} frames")
    return {
        "frames": int(proc.size),
        "fps": round(1e3 / float((dec + proc).mean()), 2),
        "fps_no_decode": round(1e3 / float(proc.mean()), 2),
        "decode_ms": round(float(dec.mean()), 4),
        "frame_ms_p50": round(float(np.median(proc)), 4),
    }


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one cell; never raises: failures become status error/skipped with a reason."""
    out: dict[str, Any] = {"status": "ok", "notes": []}
    stage = "import"
    try:
        module = _engine_module(spec)
        t0 = time.perf_counter()
        if module:
            try:
                importlib.import_module(module)
            except ImportError as err:
                raise Skip(f"{module} is not installed ({err})") from None
        out["import_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        out["base_rss_mb"] = _timing.current_rss_mb()
        image = timing_image(spec.get("timing_path"))

        stage = "load"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            runner = make_runner(spec)
            out["load_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        out["notes"] += [
            str(w.message)[:200] for w in caught if issubclass(w.category, UserWarning)
        ]
        out.update(
            backend=runner.backend,
            provider=runner.provider,
            device=runner.device,
            precision=runner.precision or spec.get("precision"),
            input_size=list(runner.input_size) if runner.input_size else None,
        )
        out["notes"] += runner.notes
        out["source_sha256"] = getattr(runner, "source_sha256", None)

        stage = "first inference"
        x = runner.prepare(image)
        out["first_ms"] = round(_timing.time_once(lambda: runner.call(x)), 3)
        box, score = runner.call(x)
        if not all_finite(box, score):
            out["status"], out["reason"] = "accuracy_failed", "the model returns non-finite outputs"

        stage = "timing"
        samples = _timing.sample(
            lambda: runner.call(x),
            warmup=spec["warmup"],
            runs=spec.get("runs"),
            seconds=spec.get("seconds"),
        )
        out["latency_ms"] = _timing.summarize(samples)
        out["fps"] = round(1e3 / out["latency_ms"]["mean"], 2)
        # Memory of model + engine: before the eval images are loaded into this process.
        out["peak_rss_mb"] = _timing.peak_rss_mb()

        if spec.get("eval_path"):
            stage = "accuracy"
            evalset = EvalSet.load(spec["eval_path"])
            out.update(accuracy(runner, evalset))
        if spec.get("video"):
            stage = "video"
            out["pipeline"] = pipeline(runner, spec["video"], spec.get("video_frames", 300))
        if spec.get("want_cost"):
            stage = "cost"
            try:
                out["cost"] = runner.cost()
            except Exception as err:  # noqa: BLE001  (cost is a side figure)
                out["notes"].append(f"could not count MACs: {_reason(err)}")
    except Skip as err:
        out.update(status="skipped", reason=str(err))
    except Exception as err:  # noqa: BLE001  (every failure becomes an error cell)
        log.debug("cell failed", exc_info=True)
        out.update(status="error", reason=f"{stage}: {_reason(err)}")
        out["traceback"] = traceback.format_exc(limit=6)[-2000:]
    out.setdefault("peak_rss_mb", _timing.peak_rss_mb())
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks._cell SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = run_cell(spec)
    Path(argv[1]).write_text(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
