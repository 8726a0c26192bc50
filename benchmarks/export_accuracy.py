"""Measure what export and quantization cost: every exported variant of a run vs its Keras model.

    python -m benchmarks.export_accuracy --run runs/demo [--run runs/cats ...]
        [--out runs/bench-export] [--verify-size 500] [--calib-size 200]

For each run directory: export TFLite fp32/fp16/dynamic/int8 and ONNX fp32/int8 into
OUT/<run name>/ (no accuracy gate, so every variant is measured), run each file through
``runtime.Localizer`` on the run's held-out test split (the test split of its training
source: unseen backgrounds for synthetic sources, the held-out part of a file dataset),
and compare with the Keras float model on the same preprocessed pixels.

Targets (issue 3): int8 TFLite and int8 ONNX lose at most 0.01 mean IoU against Keras and
are at most 30% of the size of their format's fp32 file. Results: OUT/export_accuracy.json
and OUT/export_accuracy.md; exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.atomic import write_json, write_text

MAX_DROP, MAX_SIZE_RATIO = 0.01, 0.30
VARIANTS = [
    ("tflite", "none"),
    ("tflite", "fp16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", "none"),
    ("onnx", "int8"),
]


def measure_run(
    run: Path, out: Path, *, verify_size: int, calib_size: int | None, seed: int, console: Console
) -> dict[str, Any]:
    """Export every variant of one run and measure it; returns a JSON-ready dict."""
    from export._load import load_model
    from export.calib import calibration_set
    from export.formats import FORMATS
    from export.options import VerifyOptions
    from export.verify import holdout_set

    loaded = load_model(run)
    out.mkdir(parents=True, exist_ok=True)
    calib = calibration_set(
        None,
        config=loaded.config,
        image_size=loaded.image_size,
        size=calib_size,
        seed=seed,
        model=loaded.model,
    )
    # No accuracy gate (max_iou_drop inf): every variant is written and measured.
    holdout = holdout_set(loaded, VerifyOptions(size=verify_size, max_iou_drop=math.inf, seed=seed))
    keras_iou = holdout.iou(holdout.keras_box)
    rows: list[dict[str, Any]] = [
        {
            "format": "keras",
            "precision": "fp32",
            "file": str(loaded.path),
            "size_bytes": loaded.path.stat().st_size,
            "mean_iou": float(keras_iou.mean()),
            "corloc": float((keras_iou >= 0.5).mean()),
            "iou_drop": 0.0,
        }
    ]
    fp32_size: dict[str, int] = {}
    for fmt, quantize in VARIANTS:
        console.print(f"  {run.name}: {fmt} {quantize} ...")
        t0 = time.perf_counter()
        result = FORMATS[fmt].export(
            loaded,
            out / f"model_{quantize if quantize != 'none' else 'fp32'}.{fmt}",
            quantize=quantize,
            calib=calib,
            verify=holdout,
        )
        v = result.verification
        if quantize == "none":
            fp32_size[fmt] = result.size_bytes
        rows.append(
            {
                "format": fmt,
                "precision": result.precision,
                "file": str(result.path),
                "size_bytes": result.size_bytes,
                "size_ratio": result.size_bytes / fp32_size[fmt],
                "mean_iou": v.mean_iou,
                "corloc": v.corloc,
                "iou_drop": v.iou_drop,
                "max_box_diff": v.max_box_diff,
                "score_agreement": v.score_agreement,
                "export_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        if quantize == "int8":
            row = rows[-1]
            row["target_drop_ok"] = v.iou_drop <= MAX_DROP
            row["target_size_ok"] = row["size_ratio"] <= MAX_SIZE_RATIO
    data = loaded.config.get("data", {})
    return {
        "run": str(run),
        "backbone": loaded.config.get("model", {}).get("backbone"),
        "image_size": loaded.image_size,
        "train_data": data.get("source"),
        "data_dir": data.get("data_dir"),
        "held_out": holdout.info,
        "held_out_positives": int(holdout.positives.sum()),
        "calibration": calib.info,
        "variants": rows,
    }


def table(result: dict[str, Any]) -> Table:
    t = Table(
        title=f"{result['run']} ({result['backbone']} {result['image_size']} px, "
        f"held out: {result['held_out']['source']} {result['held_out']['split']}, "
        f"n={result['held_out']['size']})"
    )
    for name in (
        "format",
        "precision",
        "size",
        "vs fp32",
        "mean IoU",
        "CorLoc",
        "IoU drop",
        "max box diff",
        "target",
    ):
        t.add_column(name, justify="left" if name in ("format", "precision", "target") else "right")
    for r in result["variants"]:
        target = ""
        if "target_drop_ok" in r:
            target = (
                "[green]met[/]" if r["target_drop_ok"] and r["target_size_ok"] else "[red]missed[/]"
            )
        ratio = f"{r['size_ratio']:.1%}" if "size_ratio" in r else "-"
        t.add_row(
            r["format"],
            r["precision"],
            f"{r['size_bytes'] / 1024:.0f} KB",
            ratio,
            f"{r['mean_iou']:.4f}",
            f"{r['corloc']:.3f}",
            f"{r['iou_drop']:+.4f}",
            f"{r['max_box_diff']:.4f}" if "max_box_diff" in r else "-",
            target,
        )
    return t


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run | held-out set | variant | size | vs fp32 | mean IoU | drop vs Keras | CorLoc "
        "| target |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for res in results:
        held = (
            f"{res['held_out']['source']} {res['held_out']['split']} (n={res['held_out']['size']})"
        )
        for r in res["variants"]:
            target = ""
            if "target_drop_ok" in r:
                target = "met" if r["target_drop_ok"] and r["target_size_ok"] else "missed"
            ratio = f"{r['size_ratio']:.1%}" if "size_ratio" in r else "-"
            lines.append(
                f"| {Path(res['run']).name} | {held} | {r['format']} {r['precision']} | "
                f"{r['size_bytes'] / 1024:.0f} KB | {ratio} | {r['mean_iou']:.4f} | "
                f"{r['iou_drop']:+.4f} | {r['corloc']:.3f} | {target} |"
            )
    return "\n".join(lines) + "\n"


def folder_names(runs: Sequence[str]) -> list[str]:
    """One output folder name per run: its own name, numbered where two runs share it
    (``a/run`` and ``b/run`` -> ``run``, ``run-2``), so no export replaces another's."""
    names: list[str] = []
    for r in runs:
        base = Path(r).resolve().name or "run"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def check_out(runs: Sequence[str], out: str | Path) -> Path:
    """``out`` (created) before any export: never one of the runs, whose own gated exports
    (RUN/model_int8.tflite, ...) the ungated variants written here would replace."""
    from runtime.errors import UserError
    from runtime.paths import check_output_folder

    out_dir = Path(out).expanduser()
    folders = {Path(r).expanduser().resolve(): r for r in runs}  # a/run, b/run: run-2 may be b/run
    for r, name in zip(runs, folder_names(runs)):
        hit = folders.get((out_dir / name).resolve())
        if hit is not None:
            whose = "that run's own folder" if hit == r else f"the folder of --run {hit}"
            raise UserError(f"--out {out} would put the variants of {r} into {whose}, over its "
                            f"exported models; pass a folder such as {out_dir / 'bench-export'}")
    return check_output_folder(out_dir, "--out")


def run(
    runs: Sequence[str],
    out: str,
    *,
    verify_size: int = 500,
    calib_size: int | None = None,
    seed: int = 0,
    console: Console | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Measure every run; write OUT/export_accuracy.{json,md}; returns (results, targets met)."""
    console = console or Console()
    out_dir = check_out(runs, out)
    results = []
    for r, name in zip(runs, folder_names(runs)):
        run_dir = Path(r)
        res = measure_run(
            run_dir,
            out_dir / name,
            verify_size=verify_size,
            calib_size=calib_size,
            seed=seed,
            console=console,
        )
        console.print(table(res))
        results.append(res)
    met = all(
        v.get("target_drop_ok", True) and v.get("target_size_ok", True)
        for res in results
        for v in res["variants"]
    )
    doc = {
        "benchmark": "export_accuracy",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join(["python -m benchmarks.export_accuracy", *sys.argv[1:]]),
        "machine": platform.platform(),
        "targets": {"max_iou_drop": MAX_DROP, "max_size_ratio": MAX_SIZE_RATIO},
        "all_targets_met": met,
        "runs": results,
    }
    write_json(out_dir / "export_accuracy.json", doc)
    write_text(out_dir / "export_accuracy.md", markdown(results))
    console.print(
        f"wrote {out_dir / 'export_accuracy.json'} and export_accuracy.md; targets "
        f"{'met' if met else '[red]missed[/]'} (int8 drop <= {MAX_DROP}, size <= "
        f"{MAX_SIZE_RATIO:.0%} of fp32)"
    )
    return results, met


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags and measure the runs."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.export_accuracy", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--run", action="append", required=True, help="trained run directory (repeatable)"
    )
    ap.add_argument(
        "--out", default="runs/bench-export", help="folder for the exported files and results"
    )
    ap.add_argument(
        "--verify-size", type=int, default=500, help="held-out images per run (default 500)"
    )
    ap.add_argument(
        "--calib-size",
        type=int,
        default=None,
        help="calibration images (default 200, or all of a smaller training set)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="TensorFlow's own output too")
    args = ap.parse_args(argv)
    from export._graph import quiet_tensorflow
    from export.options import check_size
    from runtime.errors import UserError

    quiet_tensorflow(args.verbose)
    console = Console(width=None if sys.stdout.isatty() else 120)
    missing = [r for r in args.run if not (Path(r) / "model.keras").is_file()]
    if missing:
        console.print(
            f"[red]error:[/] no model.keras in {', '.join(missing)}; train one first "
            "(make demo, or python -m train ... --out RUN)",
            highlight=False,
        )
        return 2
    try:
        check_size(args.verify_size, "--verify-size")  # before a run is loaded and exported
        if args.calib_size is not None:
            check_size(args.calib_size, "--calib-size")
        _, met = run(
            args.run,
            args.out,
            verify_size=args.verify_size,
            calib_size=args.calib_size,
            seed=args.seed,
            console=console,
        )
    except UserError as err:
        console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return 2
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
