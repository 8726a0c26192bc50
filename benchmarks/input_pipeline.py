"""Input-pipeline and data-parallel training throughput: the python path against the tf path,
and one device against ``--strategy mirrored``.

    python -m benchmarks.input_pipeline                       # 20,000 JPEGs, the full table
    python -m benchmarks.input_pipeline --images 2000 --seconds 5 --train-steps 10   # quick

Generates (once, into ``--data-dir``) a JPEG dataset in the selfie CSV layout: 320x240
scenes with one box each, written with cv2.imencode (reading goes through ``data.images``
like any file source). Every cell runs in its own process, so thread pools and caches
start clean:

- ``python-jpeg``: the reference pipeline (``train.pipeline``) decoding every JPEG every
  epoch (the file source's decoded-image cache off);
- ``python-cached``: the same with every decoded image held in memory by the file source;
- ``tf``: ``train.tf_pipeline`` from its decoded in-memory cache (the decode is a one-off,
  reported as ``cache_s``).

Each is measured at ``--threads`` (tf.data's private thread pool). ``img_per_cpu_s`` is
images per CPU-second of the process (the per-core figure, robust to other load);
``img_per_s`` is wall-clock. Training cells time ``model.fit`` steps of the demo model on
a fixed batch (the input is not what is measured) on one device and mirrored over
``--devices`` logical CPU devices (``train.distribute.split_cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from runtime import atomic
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("python-jpeg", "python-cached", "tf")
# Flag bounds. Past them a run fills the disk (--images: about 20 kB a JPEG), allocates a
# batch of (B, S, S, 3) beyond memory, asks tf.data for thousands of threads or never ends
# (--seconds inf: each cell ran to its 30-minute timeout, which --seconds must leave room
# for the cache pass within).
MAX_IMAGES, MAX_IMAGE_SIZE, MAX_BATCH, MAX_THREADS = 200_000, 1024, 1024, 256
MAX_SECONDS, MAX_STEPS, MAX_DEVICES = 600.0, 100_000, 64


# ---------------------------------------------------------------------------------- dataset
def generate(folder: Path, count: int, width: int = 320, height: int = 240, seed: int = 0) -> Path:
    """``count`` JPEG scenes with one box each and ``labels.csv`` (pixels, x1 y1 x2 y2)."""
    import cv2

    labels = folder / "labels.csv"
    if labels.is_file():
        with labels.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
            n = bool(first) + sum(1 for _ in fh)
        if first and not first.startswith("images/000000.jpg,"):  # someone's own labels: never replace them
            raise UserError(f"{labels} is not a generated benchmark set; pass another --data-dir")
        if n == count:
            return labels
    elif (folder / "images").is_dir() and any((folder / "images").iterdir()):
        # Someone's own images (exported frames are often named 000000.jpg...): never replace them
        raise UserError(f"{folder / 'images'} holds images but no generated labels.csv; pass "
                        "another --data-dir (an empty or new folder)")
    (folder / "images").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> str:
        rng = np.random.default_rng([seed, i])
        # A smooth random background with some clutter, and one filled ellipse: the object.
        grid = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
        image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(3):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(image, (x, y), (x + 40, y + 30), rng.integers(0, 256, 3).tolist(), -1)
        w, h = int(rng.integers(30, width // 2)), int(rng.integers(30, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        cv2.ellipse(image, ((x + w / 2, y + h / 2), (w, h), 0.0), rng.integers(0, 256, 3).tolist(), -1)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        name = f"images/{i:06d}.jpg"
        (folder / name).write_bytes(data.tobytes())
        return f'{name},"[{x}, {y}, {x + w}, {y + h}]",object\n'

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        rows = list(pool.map(one, range(count)))
    return atomic.write_text(labels, "".join(rows))


# ------------------------------------------------------------------------------------ cells
def _rate(iterator: Any, batches: int, seconds: float, batch_size: int) -> dict[str, float]:
    """Images per wall second and per CPU second over ``seconds`` (after ``batches`` warm-up)."""
    for _ in range(batches):
        next(iterator)
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t0 < seconds:
        next(iterator)
        n += batch_size
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": n, "img_per_s": round(n / wall, 1), "img_per_cpu_s": round(n / cpu, 1)}


def input_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """One input-pipeline measurement (in a fresh process)."""
    import tensorflow as tf

    from data.catalog import get_source

    # The thread count bounds the op pools too (tf path ops, XLA): a per-core figure.
    tf.config.threading.set_intra_op_parallelism_threads(int(spec["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(int(spec["threads"]))
    cached = spec["pipeline"] != "python-jpeg"
    cache_mb = 1e6 if spec["pipeline"] == "python-cached" else 0.0
    t0 = time.perf_counter()
    source = get_source("csv", data_dir=spec["labels"], split="all", cache_mb=cache_mb)
    out: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 1), "samples": len(source)}
    common = {"image_size": spec["image_size"], "batch_size": spec["batch_size"],
              "augment": spec["augment"], "shuffle": True, "repeat": True, "seed": 0}
    threads = int(spec["threads"])
    t0 = time.perf_counter()
    if spec["pipeline"] == "tf":
        from train.tf_pipeline import make_tf_dataset

        ds = make_tf_dataset(source, **common, threads=threads)
    else:
        from train.pipeline import make_dataset

        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = make_dataset(source, **common).with_options(options)
        if cached:  # fill the file source's cache first: one pass, not timed as throughput
            for i in range(len(source)):
                source[i]
    iterator = iter(ds)
    next(iterator)  # the tf path decodes its cache here (one pass over the set)
    out["cache_s"] = round(time.perf_counter() - t0, 1)
    out.update(_rate(iterator, 5, spec["seconds"], spec["batch_size"]))
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def train_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Training steps of the demo model on one device or mirrored (in a fresh process)."""
    from train import distribute

    if spec["strategy"] == "mirrored":
        distribute.split_cpu(spec["devices"])
    import keras
    import tensorflow as tf

    from train.config import resolve_config
    from train.fit import compile_model
    from train.model import build_model

    strategy = distribute.make_strategy(spec["strategy"])
    config = resolve_config("demo", batch_size=spec["batch_size"])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = compile_model(build_model(config.model), config)
    size, b = config.model.image_size, spec["batch_size"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)
    boxes = np.concatenate([np.tile([0.2, 0.2, 0.7, 0.8], (b, 1)), np.ones((b, 1))], 1)
    targets = {"box": boxes.astype(np.float32), "score": np.ones(b, np.int32)}
    ds = tf.data.Dataset.from_tensors((images, targets)).repeat().prefetch(2)
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(ds, steps_per_epoch=spec["steps"], epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = spec["steps"] * b
    return {"replicas": strategy.num_replicas_in_sync, "img_per_s": round(n / wall, 1),
            "img_per_cpu_s": round(n / cpu, 1), "steps": spec["steps"]}


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


CELLS = {"input": input_cell, "train": train_cell}


def run_cell(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one cell in a fresh Python process; its JSON result (or the error)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "benchmarks.input_pipeline", "--_cell", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": f"exit {proc.returncode}: {tail[:300]}"}
    return {**spec, **json.loads(lines[-1])}


# ----------------------------------------------------------------------------------- report
def markdown(results: dict[str, Any]) -> str:
    """The two tables of a run, with the command and the machine."""
    m = results["machine"]
    lines = [f"Command: `{results['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['python']}, TensorFlow {m['tensorflow']}  ",
             f"Data: {results['images']} JPEGs {results['jpeg_size']}, model input "
             f"{results['image_size']} px, batch {results['batch_size']}, augment "
             f"{results['augment']}", "",
             "| input pipeline | threads | images/s | images per CPU-second | one-off cache (s) "
             "| peak RSS (MB) |", "|---|---:|---:|---:|---:|---:|"]
    rate = (("img_per_s", ".0f"), ("img_per_cpu_s", ".0f"))
    lines += [_row(c, ("pipeline", "threads"), (*rate, ("cache_s", ".1f"), ("peak_rss_mb", ".0f")))
              for c in results["input"]]
    lines += ["", "| training (demo model) | replicas | images/s | images per CPU-second |",
              "|---|---:|---:|---:|"]
    lines += [_row(c, ("strategy", "replicas"), rate) for c in results["train"]]
    return "\n".join(lines) + "\n"


def _row(cell: dict[str, Any], keys: tuple[str, ...], figures: tuple[tuple[str, str], ...]) -> str:
    """A table row: the cell's ``keys``, then its ``figures`` formatted, or its error in their
    place (a failed cell has no figures, and no replica count)."""
    values = ([f"error: {cell['error']}"] + [""] * (len(figures) - 1) if "error" in cell
              else [format(cell[k], spec) for k, spec in figures])
    cells = [*(str(cell.get(k, "")) for k in keys), *values]
    return "|" + "".join(f" {v} |" if v else " |" for v in cells)  # an empty cell is "| |"


def _machine() -> dict[str, Any]:
    from benchmarks._fingerprint import cpu_model, library_versions

    versions = library_versions(["tensorflow", "tensorflow-cpu"])
    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "tensorflow": next(reversed(versions.values()), "not installed")}


def _bounded(flag: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # NaN too
        raise UserError(f"{flag} must be {low:g}-{high:g}, got {value:g}")


def check_flags(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The --threads and --pipelines lists; UserError naming the first bad flag (before the
    dataset is generated: a bad value was a traceback after it, or a cell mislabelled)."""
    _bounded("--images", args.images, 1, MAX_IMAGES)
    _bounded("--image-size", args.image_size, 16, MAX_IMAGE_SIZE)
    _bounded("--batch-size", args.batch_size, 1, MAX_BATCH)
    _bounded("--seconds", args.seconds, 0.1, MAX_SECONDS)
    _bounded("--train-steps", args.train_steps, 1, MAX_STEPS)
    _bounded("--devices", args.devices, 1, MAX_DEVICES)
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--threads {args.threads!r} must be comma-separated integers, e.g. 1,2") from None
    # 0 is tf.data's "as many as there are cores": measured as every core, shown as 0
    if not threads or not all(1 <= t <= MAX_THREADS for t in threads):
        raise UserError(f"--threads {args.threads!r} must list thread counts 1-{MAX_THREADS}, e.g. 1,2")
    pipelines = [name.strip() for name in args.pipelines.split(",") if name.strip()]
    bad = [name for name in pipelines if name not in PIPELINES] or ([] if pipelines else [""])
    if bad:  # an unknown name was measured as the python path under its own name
        raise UserError(f"unknown pipeline {bad[0]!r}; valid: {', '.join(PIPELINES)}")
    from data.augment import AUGMENTS

    if args.augment not in AUGMENTS:  # every cell failed with the same error
        raise UserError(f"unknown augmentation profile {args.augment!r}; valid: {', '.join(AUGMENTS)}")
    return list(dict.fromkeys(threads)), list(dict.fromkeys(pipelines))


def check_outputs(args: argparse.Namespace, folder: Path) -> None:
    """UserError when --out or --markdown would replace the generated data, each other, or
    cannot be written; --data-dir must be a folder."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--data-dir {args.data_dir}: {parent} is a file, not a folder; pass a folder")
    outs = [Path(args.out)] + ([Path(args.markdown)] if args.markdown else [])
    if len(outs) == 2 and outs[0].resolve() == outs[1].resolve():
        raise UserError(f"--out and --markdown are the same file {args.out}; pass two names")
    for out, flag in zip(outs, ("--out", "--markdown")):
        if out.is_dir():
            raise UserError(f"{flag} {out} is a folder; pass a file name such as {out / 'results.json'}")
        atomic.refuse_overwrite([out], [], flag, folders=[folder])
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the folder of {flag} {out}: {err.strerror or err}; "
                            "pass a path in a writable folder") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline",
                                description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20000, help="JPEGs to generate (20000)")
    p.add_argument("--data-dir", default=str(Path.home() / ".cache/edgeloc/bench-jpeg"),
                   help="where the generated JPEGs go (reused when complete)")
    p.add_argument("--image-size", type=int, default=128, help="model input side (demo: 128)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--augment", default="basic", help="augmentation profile (basic)")
    p.add_argument("--threads", default="1,2", help="tf.data thread counts (1,2)")
    p.add_argument("--pipelines", default=",".join(PIPELINES))
    p.add_argument("--seconds", type=float, default=20, help="timed seconds per input cell")
    p.add_argument("--train-steps", type=int, default=60, help="timed steps per training cell")
    p.add_argument("--devices", type=int, default=2, help="logical CPU devices for mirrored")
    p.add_argument("--out", default="results/input_pipeline.json")
    p.add_argument("--markdown", help="also write the tables here")
    p.add_argument("--_cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._cell:
        spec = json.loads(args._cell)
        print(json.dumps(CELLS[spec["kind"]](spec)))
        return 0
    folder = Path(args.data_dir).expanduser() / f"{args.images}"
    try:
        args.threads, args.pipelines = check_flags(args)
        check_outputs(args, folder)
        t0 = time.perf_counter()
        labels = generate(folder, args.images)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"dataset: {labels} ({time.perf_counter() - t0:.0f} s)", flush=True)
    common = {"labels": str(labels), "image_size": args.image_size, "batch_size": args.batch_size,
              "augment": args.augment, "seconds": args.seconds}
    results: dict[str, Any] = {
        "command": "python -m benchmarks.input_pipeline " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": _machine(), "images": args.images, "jpeg_size": "320x240",
        "image_size": args.image_size, "batch_size": args.batch_size, "augment": args.augment,
        "input": [], "train": []}
    for pipeline in args.pipelines:
        for threads in args.threads:
            cell = run_cell({"kind": "input", "pipeline": pipeline, "threads": threads, **common})
            print(json.dumps(cell), flush=True)
            results["input"].append(cell)
    for strategy in ("one", "mirrored"):
        cell = run_cell({"kind": "train", "strategy": strategy, "devices": args.devices,
                         "batch_size": args.batch_size, "steps": args.train_steps})
        print(json.dumps(cell), flush=True)
        results["train"].append(cell)
    out = Path(args.out)
    atomic.write_json(out, results)
    text = markdown(results)
    if args.markdown:
        atomic.write_text(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
