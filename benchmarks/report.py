"""Merge benchmark results from several devices into one comparison table and plot.

    python -m benchmarks.report results/*.json --out results/report

Reads files written by ``python -m benchmarks.latency`` (any device: a laptop, a Pi 5,
a GPU box) and writes report.md, report.csv and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape

from benchmarks import _plots, _schema
from benchmarks._schema import ResultsError, fmt, fmt_range
from runtime.atomic import refuse_overwrite
from runtime.errors import UserError
from runtime.paths import check_output_folder

log = logging.getLogger(__name__)


def load_runs(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Load and validate results files; device names made unique (``name #2``)."""
    if not paths:
        raise ResultsError(
            "no results files given; pass JSON files from python -m benchmarks.latency"
        )
    runs, seen = [], {}
    for path in paths:
        run = _schema.load(path)
        name = run["device"]["name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            run["device"]["name"] = f"{name} #{seen[name]}"
        run["source_file"] = str(path)
        runs.append(run)
    return runs


def _key(cell: dict[str, Any]) -> tuple:
    return (cell["variant"], cell["backend"], cell.get("provider") or "", cell.get("threads") or 0)


def _key_text(key: tuple) -> list[str]:
    variant, backend, provider, threads = key
    if provider:
        backend += f" ({provider.replace('ExecutionProvider', '')})"
    return [variant, backend, str(threads) if threads else "-"]


def comparison(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the cross-device table: p50 ms per device, IoU, Pi estimates."""
    devices = [r["device"]["name"] for r in runs]
    table: dict[tuple, dict[str, dict[str, Any]]] = {}
    for run in runs:
        for cell in run["cells"]:
            table.setdefault(_key(cell), {})[run["device"]["name"]] = cell
    header = [
        "variant",
        "backend",
        "thr",
        *[f"{d} p50 ms" for d in devices],
        "IoU",
        "Pi4 est. ms",
        "Pi5 est. ms",
    ]
    rows = []
    for key in sorted(table, key=lambda k: (k[0], k[1], k[2], k[3])):
        per = table[key]
        cells = []
        for d in devices:
            c = per.get(d)
            if c is None:
                cells.append("")
            elif c["status"] in ("ok", "accuracy_failed"):
                cells.append(
                    fmt(c["latency_ms"]["p50"]) + ("" if c["status"] == "ok" else " (acc!)")
                )
            else:
                cells.append(c["status"])
        any_cell = next(iter(per.values()))
        ious = [c["mean_iou"] for c in per.values() if c.get("mean_iou") is not None]
        rows.append(
            [
                *_key_text(key),
                *cells,
                fmt(ious[0]) if ious else "-",
                fmt_range(any_cell.get("est_pi4_ms")),
                fmt_range(any_cell.get("est_pi5_ms")),
            ]
        )
    return header, rows


def devices_markdown(runs: list[dict[str, Any]]) -> str:
    """One line per device: its fingerprint and where the numbers came from."""
    lines = [
        "| device | CPU | arch | cores | features | OS | Python | engines | GPU | file |",
        "|---|---|---|---:|---|---|---|---|---|---|",
    ]
    for run in runs:
        fp = run["device"].get("fingerprint", {})
        libs = fp.get("libraries", {})
        engines = ", ".join(
            f"{k} {v}"
            for k, v in libs.items()
            if k
            in (
                "ai-edge-litert",
                "tflite-runtime",
                "onnxruntime",
                "onnxruntime-gpu",
                "tensorflow",
                "tensorflow-cpu",
            )
        )
        gpus = ", ".join(g.get("name", "") for g in fp.get("gpus", [])) or "-"
        lines.append(
            f"| {run['device']['name']} | {fp.get('cpu', '?')} | {fp.get('arch', '?')} | "
            f"{fp.get('cores_logical', '?')} | {' '.join(fp.get('cpu_features', []))} | "
            f"{fp.get('os', '?')} | {fp.get('python', '?')} | {engines} | {gpus} | "
            f"{Path(run['source_file']).name} |"
        )
    return "\n".join(lines)


def to_markdown(runs: list[dict[str, Any]]) -> str:
    header, rows = comparison(runs)
    lines = [
        "## Devices",
        "",
        devices_markdown(runs),
        "",
        "## Median latency by device",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "p50 = median of the timed model calls after warm-up, in ms. `skipped`/`error` cells "
        "are explained in each device's own results file. Pi4/Pi5 columns are ESTIMATES from "
        "MACs and published figures (docs/benchmarks.md), not measurements.",
    ]
    return "\n".join(lines) + "\n"


REPORT_FILES = ("report.md", "report.csv", "report_devices.png", "report_tradeoff.png",
                "report_latency.png")


def write_report(runs: list[dict[str, Any]], out_dir: str | Path, plots: bool = True) -> list[Path]:
    """report.md, report.csv and (with matplotlib) report_devices.png, report_tradeoff.png."""
    out_dir = Path(out_dir)
    paths = [
        _schema.write_atomic(out_dir / "report.md", to_markdown(runs)),
        _schema.write_atomic(out_dir / "report.csv", _schema.to_csv(runs)),
    ]
    if plots and _plots.available():
        for name, fn in (
            ("report_devices.png", _plots.device_comparison),
            ("report_tradeoff.png", _plots.tradeoff),
            ("report_latency.png", _plots.latency_distribution),
        ):
            png = fn(runs, out_dir / name)
            if png:
                paths.append(png)
    return paths


def run(
    paths: list[str | Path], out_dir: str | Path = "results/report", plots: bool = True
) -> tuple[list, list[Path]]:
    """Load, merge and write; returns (runs, written paths)."""
    if not str(out_dir).strip():  # Path("") is the current folder: say so, do not guess
        raise UserError("--out is empty; pass a folder for the report (created if missing)")
    try:
        is_file = Path(out_dir).exists() and not Path(out_dir).is_dir()
    except OSError as err:  # a name too long for the file system
        raise UserError(f"cannot use --out {out_dir}: {err.strerror or err}; pass another "
                        "folder") from None
    if is_file:
        raise UserError(f"--out {out_dir} is a file; pass a folder for the report (created if missing)")
    targets = [Path(out_dir) / name for name in REPORT_FILES]
    refuse_overwrite(targets, [Path(p) for p in paths])
    runs = load_runs(paths)
    out_dir = check_output_folder(out_dir, "--out")
    folder = next((t for t in targets if t.is_dir()), None)
    if folder is not None:
        raise UserError(f"--out {out_dir} holds a folder {folder.name} where the report writes "
                        "a file; remove it or pass another --out folder")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UserError(f"--out folder {out_dir} is not writable; pass a writable folder")
    try:
        return runs, write_report(runs, out_dir, plots)
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        raise UserError(f"cannot write the report into {out_dir}: {err.strerror or err}; "
                        "pass --out in a writable folder with free space") from None


def main(argv: list[str] | None = None) -> int:
    """CLI entry: parse flags, merge, print the comparison table."""
    from rich.table import Table  # noqa: PLC0415

    from benchmarks._output import console  # noqa: PLC0415

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.split("\n")[0]
    )
    p.add_argument("results", nargs="+", help="results JSON files from benchmarks.latency")
    p.add_argument("--out", default="results/report", help="output folder (default results/report)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args(argv)
    con = console()
    try:
        runs, paths = run(args.results, args.out, plots=not args.no_plots)
    except (ResultsError, UserError) as err:
        con.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 2
    header, rows = comparison(runs)
    table = Table(title=f"{len(runs)} device(s)", title_justify="left", header_style="bold")
    for i, head in enumerate(header):
        table.add_column(head, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*row)
    con.print(table)
    con.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
