"""Latency, size and accuracy of every exported variant on this machine, in one table.

    python -m benchmarks.latency --model runs/demo                 # run dir: Keras + exports
    python -m benchmarks.latency --profile pi                      # on a Raspberry Pi
    python -m benchmarks.latency --model runtime/models --eval-dir ../shared/datasets/cats/train

Each cell (variant x backend x threads) runs in its own process; see docs/benchmarks.md
for the method. Writes RESULTS.json (versioned), .csv, .md and PNG plots.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rich.markup import escape

from benchmarks import _matrix, _plan
from benchmarks._fingerprint import default_device_name, fingerprint
from benchmarks._runners import HAAR_CASCADES
from benchmarks._schema import SCHEMA, SCHEMA_VERSION
from runtime.atomic import refuse_overwrite, scratch_dir
from runtime.contract import sidecar_path
from runtime.errors import UserError
from runtime.models import MODELS_DIR

log = logging.getLogger(__name__)
DEFAULT_MODELS = MODELS_DIR  # the default models, package data of the runtime

# --profile presets: flag defaults a profile sets (explicit flags still win).
PROFILES: dict[str, dict[str, Any]] = {
    "pi": {
        "model": str(DEFAULT_MODELS),
        "formats": "tflite",
        "precisions": "int8",
        "backends": "ai_edge_litert,tflite_runtime",
        "threads": "4,1",
    },
}


# More threads than any board we target has cores: --threads 100000 was passed on as is,
# asking each backend for that many OS threads.
MAX_THREADS = 256
# A million calls of even a 0.1 ms model is 100 s a cell; past that a cell only meets
# --cell-timeout. --repeat re-measures the whole matrix: 100 is far beyond a timing check.
MAX_RUNS, MAX_REPEAT = 1_000_000, 100


def default_threads() -> list[int]:
    """1, 2 and 4 threads, as far as this machine has cores (plus its core count)."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return sorted({t for t in (1, 2, 4) if t <= cores} | {min(cores, 4)})


def _parse_list(text: str | None, valid: tuple[str, ...] | None, what: str) -> set[str] | None:
    if not text:
        return None
    items = {t.strip() for t in text.split(",") if t.strip()}
    if valid:
        bad = sorted(items - set(valid))
        if bad:
            raise UserError(f"unknown {what} {bad[0]!r}; valid: {', '.join(valid)}")
    return items


def parse_threads(text: str | None) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; UserError on anything else."""
    if not text:
        return default_threads()
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(
            f"--threads {text!r} must be comma-separated integers, e.g. 1,2,4"
        ) from None
    if not values or min(values) < 1 or max(values) > MAX_THREADS:
        raise UserError(f"--threads {text!r} must list thread counts 1-{MAX_THREADS}, e.g. 1,2,4")
    return list(dict.fromkeys(values))


def run(
    model: str | Path | None = None,
    *,
    formats: str | None = None,
    precisions: str | None = None,
    backends: str | None = None,
    threads: str | None = None,
    runs: int | None = 100,
    seconds: float | None = None,
    warmup: int = 10,
    eval_source: str | None = None,
    eval_dir: str | None = None,
    eval_split: str | None = None,
    eval_size: int = 100,
    video: str | None = None,
    video_frames: int = 300,
    device_name: str | None = None,
    baseline: str = "auto",
    extra: list[str] | None = None,
    repeat: int = 1,
    max_iou_drop: float = 0.02,
    cell_timeout: float = 600,
    command: str = "",
    on_cell: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Plan and measure the whole matrix; returns a results object (see _schema)."""
    if (
        runs is not None
        and runs < 1
        or seconds is not None
        and not 0 < seconds < math.inf  # NaN too: it timed every cell to the run cap
        or warmup < 0
        or repeat < 1
    ):
        raise UserError("--runs, --seconds and --repeat must be positive (and finite) and --warmup >= 0")
    if not 0 < cell_timeout < math.inf or not 0 <= max_iou_drop <= 1:
        raise UserError("--cell-timeout must be a positive number of seconds and --max-iou-drop "
                        f"within 0-1, got {cell_timeout:g} and {max_iou_drop:g}")
    if seconds is not None and seconds >= cell_timeout:  # every cell was abandoned, none timed
        raise UserError(f"--seconds {seconds:g} must be below --cell-timeout {cell_timeout:g}; "
                        "lower --seconds or raise --cell-timeout")
    for flag, value, cap in (("--runs", runs, MAX_RUNS), ("--warmup", warmup, MAX_RUNS),
                             ("--repeat", repeat, MAX_REPEAT)):
        if value is not None and value > cap:  # each cell ran to --cell-timeout, then was dropped
            raise UserError(f"{flag} {value} is more than {cap}; for a long timing pass --seconds")
    if eval_size < 1:
        raise UserError(f"--eval-size must be at least 1, got {eval_size}")
    if video and not Path(video).is_file():
        what = "is not a regular file" if Path(video).exists() else "not found"
        raise UserError(f"--video {video} {what}; pass a video file (e.g. an .mp4)")
    if video and video_frames < 1:  # 0 read no frame: the cell said "fewer than 4 frames"
        raise UserError(f"--video-frames must be at least 1, got {video_frames}")
    fmt_set = _parse_list(formats, _plan.FORMATS, "format")
    prec_set = _parse_list(precisions, _plan.PRECISIONS, "precision")
    backend_set = _parse_list(backends, _plan.backend_names(installed=True), "backend")
    thread_list = parse_threads(threads)
    variants = _plan.discover(model or DEFAULT_MODELS)
    for path in extra or []:
        variants += _plan.discover(path, kind="extra")
    variants = [
        v
        for v in variants
        if (not fmt_set or v.format in fmt_set)
        and (not prec_set or v.precision in prec_set or v.precision is None)
    ]
    if not variants:
        raise UserError(
            f"no model in {model} matches --formats {formats} --precisions {precisions}"
        )
    evalset, eval_reason = _matrix.build_evalset(
        variants, source=eval_source, data_dir=eval_dir, split=eval_split, size=eval_size
    )
    labels_text = (
        " ".join(evalset.labels if evalset else []) + " " + " ".join(v.name for v in variants)
    )
    if not fmt_set or "haar" in fmt_set:
        variants += _plan.baselines(baseline, labels_text)
    fp = fingerprint()
    with scratch_dir("bench") as tmp:  # shared with the cell processes; gone afterwards
        eval_path, timing_path = None, None
        if evalset is not None and len(evalset):
            eval_path = str(tmp / "eval.npz")
            evalset.save(eval_path)
            timing_path = str(tmp / "timing.npy")  # every cell times this same image
            np.save(timing_path, evalset.images[0])
        common = {
            "warmup": warmup,
            "runs": None if seconds else runs,
            "seconds": seconds,
            "eval_path": eval_path,
            "timing_path": timing_path,
            "video": video,
            "video_frames": video_frames,
        }
        planned = _matrix.plan_specs(
            variants,
            threads=thread_list,
            backends=backend_set,
            has_gpu=bool(fp["gpus"]),
            common=common,
        )
        cells, raws, costs = _matrix.measure(planned, repeat, cell_timeout, on_cell)
    for cell, raw in zip(cells, raws, strict=True):
        if raw.get("cost") and cell["variant"] not in costs:
            costs[cell["variant"]] = raw["cost"]
    _matrix.share_costs(cells, raws, costs)
    _matrix.finish(cells, costs, max_iou_drop)
    usable = fp.get("cores_usable") or fp.get("cores_logical") or 0
    for cell in cells:
        if cell["device"] == "cpu" and usable and (cell.get("threads") or 0) > usable:
            cell["notes"].append(
                f"{cell['threads']} threads on {usable} usable cores: oversubscribed"
            )
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": f"edgeloc {_version()}",
        "command": command,
        "device": {"name": device_name or default_device_name(fp), "fingerprint": fp},
        "settings": {
            "model": str(model or DEFAULT_MODELS),
            "threads": thread_list,
            "runs": runs,
            "seconds": seconds,
            "warmup": warmup,
            "repeat": repeat,
            "video": video,
            "max_iou_drop": max_iou_drop,
            "formats": formats,
            "precisions": precisions,
            "backends": backends,
        },
        "eval": {
            "name": evalset.name if evalset else None,
            "n": len(evalset) if evalset else 0,
            "reason": eval_reason,
        },
        "cells": cells,
    }


def _version() -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return version("edgeloc")
    except Exception:  # noqa: BLE001  (not installed: running from a clone)
        return "dev"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.latency", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--model",
        help="run dir, folder of .tflite/.onnx files, or one model file (default: the "
        f"runtime's default models, {DEFAULT_MODELS})",
    )
    p.add_argument("--formats", help=f"comma list of {','.join(_plan.FORMATS)} (default: all)")
    p.add_argument(
        "--precisions", help=f"comma list of {','.join(_plan.PRECISIONS)} (default: all)"
    )
    p.add_argument(
        "--backends",
        help=f"comma list of {', '.join(_plan.backend_names())} (ONNX Runtime providers by "
        "short name; default: every one installed)",
    )
    p.add_argument(
        "--threads", help="comma list of CPU thread counts (default: 1,2,4 up to the core count)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runs", type=int, default=100, help="timed calls per cell (default 100)")
    g.add_argument("--seconds", type=float, help="time each cell for this long instead of --runs")
    p.add_argument(
        "--warmup", type=int, default=10, help="untimed calls before timing (default 10)"
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="measure every cell N times (timing check)"
    )
    p.add_argument(
        "--eval",
        dest="eval_source",
        help="eval source name (data.sources), e.g. cat-on-scenes, voc",
    )
    p.add_argument(
        "--eval-dir", help="eval data folder: a CSV or VOC set (read whole unless --eval-split)"
    )
    p.add_argument("--eval-split", help="split of the eval source: test (default), val, train, all")
    p.add_argument("--eval-size", type=int, default=100, help="eval images at most (default 100)")
    p.add_argument("--video", help="video file for the end-to-end pipeline FPS")
    p.add_argument(
        "--video-frames", type=int, default=300, help="frames of --video to use (default 300)"
    )
    p.add_argument(
        "--baseline",
        default="auto",
        help=f"Haar baselines: auto, none or a comma list of {','.join(HAAR_CASCADES)}",
    )
    p.add_argument(
        "--extra", action="append", help="another localizer model file or folder to include"
    )
    p.add_argument(
        "--max-iou-drop",
        type=float,
        default=0.02,
        help="IoU drop vs the float model that fails a cell",
    )
    p.add_argument("--device-name", help="name of this device in tables (default: board or CPU)")
    p.add_argument(
        "--profile", choices=sorted(PROFILES), help="preset: pi = int8 TFLite, 4 and 1 threads"
    )
    p.add_argument(
        "--cell-timeout", type=float, default=600, help="seconds before a cell is abandoned"
    )
    p.add_argument("--out", help="results JSON path (default results/latency-DEVICE.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def input_files(args: argparse.Namespace) -> list[Path]:
    """The files a run reads: every file of the --model and --extra paths (for a model file,
    also its contract sidecar and its run's config.json), and --video."""
    files = [Path(args.video)] if args.video else []
    for spec in [args.model or DEFAULT_MODELS, *(args.extra or [])]:
        path = Path(spec).expanduser()
        files += (sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir()
                  else [path, sidecar_path(path), path.parent / "config.json"])
    return files


def outside_data(out: Path, folders: list[Path]) -> None:
    """UserError when ``out`` lies in an eval data folder: a new .csv or .json there joins
    the data set (a CSV or COCO folder then holds two and no longer loads)."""
    real = out.expanduser().resolve()
    for folder in (f for f in folders if f.is_dir()):
        if folder.resolve() in real.parents:
            raise UserError(f"--out {out} is inside the eval data {folder}; its files would join "
                            "the data set: pass a path outside it")


def writable_folder(folder: Path, *, create: bool) -> None:
    """Check (and with ``create``, make) the results folder before measuring; UserError if
    it cannot hold the results (found after measuring, that was a traceback that threw the
    measurements away)."""
    file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:  # mkdir said "File exists"
        raise UserError(f"--out folder {folder}: {file} is a file, not a folder; pass --out in a folder")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the --out folder {folder}: {err.strerror or err}; "
                        "pass --out in a writable folder") from None
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"the --out folder {existing} is not writable; pass --out in a writable folder")


def _data(args: argparse.Namespace) -> list[Path]:
    return [Path(args.eval_dir).expanduser()] if args.eval_dir else []


def main(argv: list[str] | None = None) -> int:
    """CLI entry: parse flags, run, print the table and write the files."""
    from benchmarks import _output  # noqa: PLC0415  (rich and plotting: CLI only)

    args = build_parser().parse_args(argv)
    for key, value in PROFILES.get(args.profile or "", {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = _output.console()
    command = "python -m benchmarks.latency " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out) if args.out else None
    try:
        if out is not None:  # before measuring: never write over a model, data or video
            refuse_overwrite(_output.output_paths(out), input_files(args), folders=_data(args))
            outside_data(out, _data(args))
        writable_folder((out or _output.default_out("device")).parent, create=out is not None)
        with _output.progress(console) as bar:
            results = run(
                args.model,
                formats=args.formats,
                precisions=args.precisions,
                backends=args.backends,
                threads=args.threads,
                runs=args.runs,
                seconds=args.seconds,
                warmup=args.warmup,
                eval_source=args.eval_source,
                eval_dir=args.eval_dir,
                eval_split=args.eval_split,
                eval_size=args.eval_size,
                video=args.video,
                video_frames=args.video_frames,
                device_name=args.device_name,
                baseline=args.baseline,
                extra=args.extra,
                repeat=args.repeat,
                max_iou_drop=args.max_iou_drop,
                cell_timeout=args.cell_timeout,
                command=command,
                on_cell=bar,
            )
    except UserError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 2
    out = out or _output.default_out(results["device"]["name"])
    paths = _output.write_all(results, out, plots=not args.no_plots)
    _output.print_run(console, results)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    models_ok = [c for c in results["cells"] if c["kind"] != "baseline" and c["status"] == "ok"]
    return 0 if models_ok else 1


if __name__ == "__main__":
    sys.exit(main())
