"""Runtime overhead on 640x480 video frames: per-frame cost vs bare invoke, load time, memory.

    python -m benchmarks.runtime_overhead               # runtime/models/cat_int8.{tflite,onnx}
    python -m benchmarks.runtime_overhead --model m.tflite --rss-frames 10000
    python -m benchmarks.runtime_overhead --standin            # build stand-in int8 models first

Per frame, side by side in one run (medians): each 640x480 frame is decoded from a video
file (decode reported apart), then timed as the webcam loop meets it, right after its
decode: frames rotate over the whole sequential frame (preprocess, invoke, postprocess,
draw: the "per frame" figure), the same stages one by one (preprocess = the contract's
bilinear resize + BGR->RGB; invoke through the runtime = quantize, run, dequantize), and
the bare engine call on the frame's tensor (set_tensor/invoke/get_tensor, or
session.run), and the floor (the contract's preprocessing + the bare call: what any
sequential runtime that follows the contract must spend), so all four see the same cache
state. The HUD refreshes as it would with
a 30 FPS camera. The webcam loop prepares frames in its capture thread, so the inference
thread's share is reported too. Load time and memory are measured in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks._fingerprint import fingerprint
from benchmarks._standins import build_standins
from runtime.atomic import refuse_overwrite, scratch_dir, write_json
from runtime.contract import model_files
from runtime.errors import UserError
from runtime.localizer import Localizer
from runtime.models import MODELS_DIR
from runtime.paths import check_output_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = [MODELS_DIR / "cat_int8.tflite", MODELS_DIR / "cat_int8.onnx"]
TARGET_RATIO, TARGET_LOAD_S, TARGET_RSS_MB = 1.25, 0.3, 150.0


def make_video(path: Path, frames: int = 120, size: tuple[int, int] = (640, 480)) -> Path:
    """A synthetic clip: a textured moving scene, so decoding costs what a real clip costs."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(frames):
        img = np.roll(base, 4 * i, axis=1)
        cv2.circle(img, (100 + 3 * i, 240), 60, (40, 200, 240), -1)
        writer.write(img)
    writer.release()
    return path


def stream(video: Path, count: int) -> Iterator[tuple[np.ndarray, float]]:
    """``count`` frames of the clip (looped) with each one's decode seconds."""
    cap = cv2.VideoCapture(str(video))
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:  # end of the clip: start it again (reopening is not timed)
                cap.release()
                cap = cv2.VideoCapture(str(video))
                t0 = time.perf_counter()
                ok, frame = cap.read()
                if not ok:
                    raise SystemExit(f"cannot decode {video}")
            yield frame, time.perf_counter() - t0
    finally:
        cap.release()


def bare_call(loc: Any) -> Any:
    """The bare engine call on a prepared tensor, no edgeloc code in the timed path."""
    engine = loc.raw_engine()
    if loc.backend_name == "onnxruntime":
        name = engine.get_inputs()[0].name
        outs = [o.name for o in engine.get_outputs()]
        return lambda x: engine.run(outs, {name: x})
    index = engine.get_input_details()[0]["index"]
    out_idx = [d["index"] for d in engine.get_output_details()]
    dtype = engine.get_input_details()[0]["dtype"]
    if dtype != np.uint8:
        raise SystemExit(
            f"{loc.path} takes {np.dtype(dtype)} pixels; benchmark a model with a uint8 input "
            "(edgeloc's default int8 export)"
        )

    def call(x: np.ndarray) -> list:
        engine.set_tensor(index, x)
        engine.invoke()
        return [engine.get_tensor(i) for i in out_idx]

    return call


class _CameraClock:
    """A clock that advances one frame of a 30 FPS camera per call: the HUD refreshes
    (and re-renders its text) as often as it would live, not as often as this loop spins."""

    def __init__(self, fps: float = 30.0):
        self.t, self.step = 0.0, 1.0 / fps

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def per_frame(model: Path, video: Path, threads: int, frames: int) -> dict[str, Any]:
    """Median microseconds of each stage, each measured right after a frame is decoded, as
    in the webcam loop (decoding evicts the model from the CPU caches). Frames rotate over
    four measurements: the whole sequential frame, the stages one by one, the bare engine
    call on the frame's tensor and the floor (preprocessing + bare call), so all four meet
    the same cache state."""
    from runtime import Localizer
    from runtime.overlay import HudValues, draw_hud, draw_result

    loc = Localizer.load(model, threads=threads)
    bare = bare_call(loc)
    hud = HudValues(clock=_CameraClock())
    keys = ("decode", "pre", "invoke", "predict", "draw", "bare", "full", "floor")
    t: dict[str, list[float]] = {k: [] for k in keys}
    clock = time.perf_counter
    warmup = 30
    for i, (img, decode_s) in enumerate(stream(video, 4 * frames + warmup)):
        if i == warmup:
            t = {k: [] for k in keys}
        t["decode"].append(decode_s)
        if i % 4 == 0:  # the whole sequential frame in one span: the "per frame" figure
            a = clock()
            result = loc.predict(img, bgr=True)
            draw_result(img, result)
            draw_hud(img, *hud.update(30.0, result.latency_ms))
            t["full"].append(clock() - a)
        elif i % 4 == 1:  # the same work stage by stage
            a = clock()
            x = loc.prepare(img, bgr=True)
            b = clock()
            loc.invoke(x)
            c = clock()
            result = loc.predict(img, bgr=True, pixels=x)
            d = clock()
            draw_result(img, result)
            draw_hud(img, *hud.update(30.0, result.latency_ms))
            e = clock()
            for key, span in (("pre", b - a), ("invoke", c - b), ("predict", d - c), ("draw", e - d)):
                t[key].append(span)
        elif i % 4 == 2:  # the bare engine call (the tensor is made untimed first)
            x = loc.prepare(img, bgr=True)
            a = clock()
            bare(x)
            t["bare"].append(clock() - a)
        else:  # the floor: the contract's preprocessing + the bare call, nothing else
            a = clock()
            bare(loc.prepare(img, bgr=True))
            t["floor"].append(clock() - a)
    t = {k: [v * 1e6 for v in vals] for k, vals in t.items()}
    med = {k: float(np.median(v)) for k, v in t.items()}
    med["post"] = max(0.0, med["predict"] - med["invoke"])
    med["inference_thread"] = med["predict"] + med["draw"]
    return {
        "model": str(model),
        "backend": f"{loc.backend_name}/{loc.provider}",
        "threads": threads,
        "input": f"{loc.contract.input_size[1]}x{loc.contract.input_size[0]}",
        "precision": loc.contract.precision,
        "samples": len(t["bare"]),
        **med,
        "ratio_sequential": med["full"] / med["bare"],
        "ratio_inference_thread": med["inference_thread"] / med["bare"],
        "ratio_floor": med["floor"] / med["bare"],
    }


_LOAD = """
import json, sys, time
t0 = time.perf_counter()
import runtime
t1 = time.perf_counter()
loc = runtime.Localizer.load(sys.argv[1], threads=int(sys.argv[2]))
t2 = time.perf_counter()
import numpy as np
loc.predict(np.zeros((480, 640, 3), np.uint8))
t3 = time.perf_counter()
heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx")]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2,
                  "heavy": heavy}))
"""


def _fresh(script: str, *args: Any) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (nothing imported yet); its last line as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def load_time(model: Path, threads: int, repeats: int = 5) -> dict[str, float]:
    """`import runtime` + Localizer.load in fresh interpreters (median of ``repeats``)."""
    runs = [_fresh(_LOAD, model, threads) for _ in range(repeats)]
    keys = ("import_s", "load_s", "first_predict_s")
    med = {k: float(np.median([r[k] for r in runs])) for k in keys}
    med["import_plus_load_s"] = float(np.median([r["import_s"] + r["load_s"] for r in runs]))
    med["heavy_modules"] = runs[0]["heavy"]
    return med


def digest_check(model: Path, folder: Path, repeats: int = 30) -> dict[str, float]:
    """What the integrity check adds to Localizer.load, on a sealed copy of ``model``.

    ``digest_ms``: the runtime's own check (``verify_digest``) on the file's bytes, median;
    ``load_verify_ms`` / ``load_no_verify_ms``: Localizer.load medians with and without it
    (alternating, in this process: the engine import is already paid).
    """
    from benchmarks._sealed import sealed_copy
    from runtime import Localizer
    from runtime.modelfile import verify_digest

    sealed = sealed_copy(model, folder / f"sealed_{model.name}")
    data = sealed.read_bytes()
    check, verify, plain = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        assert verify_digest(sealed, data)
        check.append(time.perf_counter() - t0)
    for _ in range(max(3, repeats // 3)):
        for flag, out in ((True, verify), (False, plain)):
            t0 = time.perf_counter()
            loc = Localizer.load(sealed, threads=1, verify=flag)
            out.append(time.perf_counter() - t0)
            del loc  # freeing the engine is not part of loading it
    return {
        "bytes": len(data),
        "digest_ms": float(np.median(check)) * 1e3,
        "load_verify_ms": float(np.median(verify)) * 1e3,
        "load_no_verify_ms": float(np.median(plain)) * 1e3,
    }


_RSS = """
import json, sys, time
from benchmarks._timing import current_rss_mb
from runtime import webcam
samples = []
def on_frame(img, result, n=[0]):
    n[0] += 1
    if n[0] % 250 == 0 or n[0] == 1:
        samples.append((n[0], time.perf_counter(), current_rss_mb()))
s = webcam.run(sys.argv[1], sys.argv[2], display=False, loop=True, pace=False,
               max_frames=int(sys.argv[3]), threads=int(sys.argv[4]), on_frame=on_frame)
print(json.dumps({"samples": samples, "summary": s.to_dict()}))
"""


def rss_run(model: Path, video: Path, frames: int, threads: int) -> dict[str, Any]:
    """Resident memory of the real webcam loop over ``frames`` frames (fresh process)."""
    data = _fresh(_RSS, model, video, frames, threads)
    n, _, mb = (np.array(c, float) for c in zip(*data["samples"]))
    warm = n >= min(1000, n.max())  # after the first 1000 frames: allocators have settled
    # Too few samples for a slope (under ~1500 frames): None, not a NaN in the JSON.
    slope = float(np.polyfit(n[warm], mb[warm], 1)[0] * 1000) if warm.sum() > 2 else None
    return {
        "frames": int(data["summary"]["frames"]),
        "fps": data["summary"]["fps"],
        "rss_first_mb": float(mb[0]),
        "rss_at_1000_mb": float(mb[warm][0]),
        "rss_max_mb": float(mb.max()),
        "rss_last_mb": float(mb[-1]),
        "growth_mb_per_1000_frames": slope,
        "samples": data["samples"],
    }


def _growth(slope: float | None) -> str:
    return "- (too few frames)" if slope is None else f"{slope:+.3f} MB"


def machine() -> dict[str, Any]:
    """The device fingerprint, plus the load average: this runs on a shared machine."""
    return {**fingerprint(), "load_avg": os.getloadavg()}


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | backend | input | decode | preprocess | invoke (runtime) | post | draw | "
        "**per frame** | bare invoke | ratio | floor | ratio | inference thread | ratio |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        lines.append(
            f"| {Path(r['model']).name} | {r['backend']} | {r['input']} | {r['decode']:.0f} | "
            f"{r['pre']:.0f} | {r['invoke']:.0f} | {r['post']:.0f} | {r['draw']:.0f} | "
            f"**{r['full']:.0f}** | "
            f"{r['bare']:.0f} | {r['ratio_sequential']:.2f} | {r['floor']:.0f} | "
            f"{r['ratio_floor']:.2f} | {r['inference_thread']:.0f} | "
            f"{r['ratio_inference_thread']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", help="int8 model(s); default runtime/models/cat_int8.*"
    )
    parser.add_argument(
        "--standin", action="store_true", help="also build and time int8 stand-in models"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=1000, help="frames timed per model")
    parser.add_argument("--rss-frames", type=int, default=10_000, help="0 skips the memory run")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument(
        "--opencv-threads", type=int, default=1,
        help="cv2.setNumThreads, as runtime.webcam sets it (1); 0 = OpenCV's default pool",
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.frames < 1 or args.rss_frames < 0 or args.opencv_threads < 0:
        parser.error("--threads and --frames must be at least 1, --rss-frames and "
                     "--opencv-threads at least 0")
    if args.opencv_threads:
        cv2.setNumThreads(args.opencv_threads)
    models = (
        [Path(m) for m in args.model] if args.model else [m for m in DEFAULT_MODELS if m.exists()]
    )
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        what = "not a model file" if Path(missing[0]).exists() else "no such model file"
        parser.error(f"--model {missing[0]}: {what}")
    try:
        if args.json:  # before measuring: a bad --json found after it threw the figures away
            check_output_file(args.json, "--json")
            refuse_overwrite(args.json, model_files(models), "--json")
        if args.standin:
            models += build_standins(Path(tempfile.gettempdir()) / "edgeloc-standins")
        if not models:
            raise UserError("no models: run `make models`, pass --model PATH or --standin")
        for model in models:  # a damaged second model found before the first is measured
            Localizer.load(model, threads=args.threads)
        # Scratch under runtime.atomic's folder: a killed run's clip goes on the next run.
        with scratch_dir("overhead") as work:
            report = _measure(models, work, args)
        if args.json:
            write_json(args.json, report, indent=1)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _measure(models: list[Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Time and measure every model (scratch files in ``work``), print the tables."""
    video = make_video(work / "clip.mp4")
    report: dict[str, Any] = {"machine": machine(), "per_frame_us": [], "load": {}, "rss": {}}
    for model in models:
        row = per_frame(model, video, args.threads, args.frames)
        report["per_frame_us"].append(row)
        report["load"][str(model)] = load_time(model, args.threads)
        report["load"][str(model)].update(digest_check(model, work))
    if args.rss_frames:
        report["rss"][str(models[0])] = rss_run(models[0], video, args.rss_frames, args.threads)
    m, lib = report["machine"], report["machine"]["libraries"]
    opencv = lib.get("opencv-python-headless") or lib.get("opencv-python", "-")
    print(
        f"Machine: {m['cpu']}, {m['cores_logical']} cores, {m['os']}, {m['arch']}, Python "
        f"{m['python']}, load average {m['load_avg'][0]:.1f}; numpy {lib.get('numpy', '-')}, "
        f"OpenCV {opencv}, ai-edge-litert {lib.get('ai-edge-litert', '-')}, onnxruntime "
        f"{lib.get('onnxruntime') or lib.get('onnxruntime-gpu', '-')}; threads {args.threads}\n"
    )
    print(f"Per-frame medians in microseconds, 640x480 frames (target ratio <= {TARGET_RATIO}):\n")
    print(_table(report["per_frame_us"]))
    print(
        "\n| model | import runtime | Localizer.load | import + load | first predict "
        "| TF/Keras loaded | digest check (sealed copy; load with / without) |"
    )
    print("|---|---|---|---|---|---|---|")
    for model, r in report["load"].items():
        print(
            f"| {Path(model).name} | {r['import_s'] * 1e3:.0f} ms | {r['load_s'] * 1e3:.0f} ms | "
            f"**{r['import_plus_load_s'] * 1e3:.0f} ms** | {r['first_predict_s'] * 1e3:.1f} ms | "
            f"{'yes' if r['heavy_modules'] else 'no'} | {r['digest_ms']:.2f} ms "
            f"({r['bytes'] / 1e6:.1f} MB; {r['load_verify_ms']:.1f} / "
            f"{r['load_no_verify_ms']:.1f} ms) |"
        )
    for model, r in report["rss"].items():
        print(
            f"\nResident memory, webcam loop on the clip (looped), {r['frames']} frames at "
            f"{r['fps']:.0f} FPS, {Path(model).name} "
            f"(target < {TARGET_RSS_MB:.0f} MB, no growth):\n"
        )
        print("| after 1 frame | after 1000 | max | last | growth per 1000 frames |")
        print("|---|---|---|---|---|")
        print(
            f"| {r['rss_first_mb']:.1f} MB | {r['rss_at_1000_mb']:.1f} MB | "
            f"{r['rss_max_mb']:.1f} MB | "
            f"{r['rss_last_mb']:.1f} MB | {_growth(r['growth_mb_per_1000_frames'])} |"
        )
    return report


if __name__ == "__main__":
    sys.exit(main())
