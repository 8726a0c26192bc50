"""The versioned results format of ``benchmarks.latency`` and its writers (JSON, CSV, Markdown).

One results file = one run on one device:

    {"schema": "edgeloc.benchmark", "schema_version": 1, "created": ISO time,
     "tool": "edgeloc 0.1.0", "command": "python -m benchmarks.latency ...",
     "device": {"name": str, "fingerprint": {...}}, "settings": {...},
     "eval": {"name": str | None, "n": int, "reason": str | None},
     "cells": [cell, ...]}

A cell is one (variant, backend, threads) measurement; ``CELL_KEYS`` lists its keys.
Latency figures are milliseconds of the timed call only (see docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
import stat
from pathlib import Path
from typing import Any, Iterable

from runtime.atomic import write_text

SCHEMA = "edgeloc.benchmark"
SCHEMA_VERSION = 1
STATUSES = ("ok", "accuracy_failed", "error", "skipped")

# Every cell carries all of these keys (None when not measured).
CELL_KEYS: dict[str, str] = {
    "variant": "model file name (or baseline name)",
    "kind": "model | baseline | extra",
    "file": "path of the model file as given",
    "format": "tflite | onnx | keras | haar",
    "precision": "fp32 | fp16 | dynamic | int8 (from the model contract or file name)",
    "backend": "litert | tflite_runtime | onnxruntime | keras | opencv",
    "provider": "onnxruntime execution provider, TF device or None",
    "device": "cpu | gpu",
    "threads": "threads requested (None: backend default)",
    "status": "ok | accuracy_failed | error | skipped",
    "reason": "why a cell is not ok",
    "size_bytes": "model file size",
    "params": "parameter count",
    "macs": "multiply-accumulates per inference",
    "est_pi4_ms": "[low, high] ESTIMATE for a Raspberry Pi 4 (not measured)",
    "est_pi5_ms": "[low, high] ESTIMATE for a Raspberry Pi 5 (not measured)",
    "input_size": "[height, width] of the model input",
    "n_eval": "images in the accuracy check",
    "mean_iou": "mean IoU on eval images that hold an object",
    "corloc": "share of those with IoU >= 0.5 (CorLoc@0.5)",
    "iou_drop": "reference mean IoU minus this cell's (reference: float model)",
    "import_ms": "importing the backend module",
    "load_ms": "creating the interpreter/session from the file",
    "first_ms": "the first inference (includes lazy initialisation)",
    "latency_ms": "stats of the timed calls: mean std p50 p90 p99 min max n quantiles",
    "fps": "1000 / mean latency",
    "peak_rss_mb": "peak resident memory of the cell's process up to the end of the timed runs",
    "base_rss_mb": "resident memory after imports, before loading the model",
    "pipeline": "video pipeline: fps, frames, decode_ms, frame_ms_p50 (with --video)",
    "repeat_p50_ms": "p50 of each repeat (with --repeat)",
    "notes": "list of remarks",
}
TOP_KEYS = ("schema", "schema_version", "created", "device", "settings", "cells")


class ResultsError(ValueError):
    """A results file that is not (or no longer) readable by this version."""


def new_cell(**values: Any) -> dict[str, Any]:
    """A cell with every key present; unknown keys raise (they would be silently lost)."""
    unknown = set(values) - set(CELL_KEYS)
    if unknown:
        raise KeyError(f"unknown cell keys: {sorted(unknown)}")
    cell = {key: None for key in CELL_KEYS}
    cell["notes"] = []
    cell.update(values)
    return cell


def validate(data: Any, source: str = "results") -> dict[str, Any]:
    """Check a loaded results object; raise ResultsError naming the problem and the fix."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(
            f'{source} is not an edgeloc benchmark results file (no "schema": "{SCHEMA}"); '
            "pass JSON files written by python -m benchmarks.latency --out"
        )
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise ResultsError(f"{source} has no integer schema_version; rerun benchmarks.latency")
    if version < SCHEMA_VERSION:
        raise ResultsError(
            f"{source} uses results schema v{version}, older than v{SCHEMA_VERSION} "
            "of this edgeloc; "
            "rerun python -m benchmarks.latency on that device to regenerate it"
        )
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{source} uses results schema v{version}, newer than v{SCHEMA_VERSION} "
            "of this edgeloc; "
            "upgrade edgeloc to read it"
        )
    missing = [key for key in TOP_KEYS if key not in data]
    if missing:
        raise ResultsError(f"{source} lacks {', '.join(missing)}; it is truncated or hand-edited")
    if not isinstance(data["cells"], list):
        raise ResultsError(f"{source}: 'cells' must be a list")
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict):
            raise ResultsError(f"{source}: cell {i} is not an object")
        absent = [key for key in CELL_KEYS if key not in cell]
        if absent:
            raise ResultsError(f"{source}: cell {i} lacks {', '.join(absent)}")
        if cell["status"] not in STATUSES:
            raise ResultsError(f"{source}: cell {i} has unknown status {cell['status']!r}")
        if cell["status"] in ("ok", "accuracy_failed") and not isinstance(cell["latency_ms"], dict):
            raise ResultsError(f"{source}: cell {i} is {cell['status']} but has no latency_ms")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(data: dict[str, Any], source: str) -> None:
    """The types the report and its plots read: a hand-edited or damaged file is refused
    with the field it got wrong, not a traceback deep in a table or a plot."""
    device = data["device"]
    if not isinstance(device, dict) or not isinstance(device.get("name"), str):
        raise ResultsError(f"{source}: 'device' must be an object with a 'name' string; "
                           "it is damaged or hand-edited: rerun benchmarks.latency")
    if not isinstance(device.get("fingerprint", {}), dict):
        raise ResultsError(f"{source}: device 'fingerprint' must be an object; rerun benchmarks.latency")
    for i, cell in enumerate(data["cells"]):
        wrong = [key for key in ("variant",) if not isinstance(cell[key], str)]
        wrong += [key for key in ("backend", "provider") if cell[key] is not None
                  and not isinstance(cell[key], str)]
        wrong += [key for key in ("threads",) if cell[key] is not None
                  and (not isinstance(cell[key], int) or isinstance(cell[key], bool))]
        wrong += [key for key in ("mean_iou", "corloc", "iou_drop", "fps", "load_ms", "first_ms")
                  if cell[key] is not None and not _number(cell[key])]
        wrong += [key for key in ("est_pi4_ms", "est_pi5_ms") if cell[key] is not None and not (
            isinstance(cell[key], list) and len(cell[key]) == 2 and all(map(_number, cell[key])))]
        lat = cell["latency_ms"]
        if isinstance(lat, dict):
            q = lat.get("quantiles")
            if not _number(lat.get("p50")) or lat["p50"] < 0:
                wrong.append("latency_ms.p50")
            if q is not None and not (isinstance(q, list) and len(q) == 101 and all(map(_number, q))):
                wrong.append("latency_ms.quantiles")
        elif lat is not None:
            wrong.append("latency_ms")
        if wrong:
            raise ResultsError(f"{source}: cell {i} has a bad {', '.join(wrong)}; the file is "
                               "damaged or hand-edited: rerun benchmarks.latency")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate one results file."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, /dev/zero never end
            raise ResultsError(f"results file {path} is not a regular file (a folder, FIFO or "
                               "device); pass JSON files written by benchmarks.latency")
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"results file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read results file {path}: {err}") from None
    try:  # NaN/Infinity: Python's json reads them, the writer never writes them
        data = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as err:
        raise ResultsError(
            f"{path} is not JSON ({err}); pass files written by benchmarks.latency"
        ) from None
    validate(data, str(path))
    _check_fields(data, str(path))
    return data


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` whole or not at all (``runtime.atomic``), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    """Validate and write a results object."""
    data = _clean(results)
    validate(data, str(path))
    return write_atomic(path, json.dumps(data, indent=1) + "\n")


# ---- flat views: CSV and Markdown -------------------------------------------------------------

CSV_COLUMNS = (
    "device",
    "variant",
    "kind",
    "format",
    "precision",
    "backend",
    "provider",
    "device_type",
    "threads",
    "status",
    "reason",
    "size_bytes",
    "params",
    "macs",
    "input_size",
    "n_eval",
    "mean_iou",
    "corloc",
    "iou_drop",
    "import_ms",
    "load_ms",
    "first_ms",
    "mean_ms",
    "std_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "min_ms",
    "max_ms",
    "runs",
    "fps",
    "peak_rss_mb",
    "base_rss_mb",
    "pipeline_fps",
    "est_pi4_ms_low",
    "est_pi4_ms_high",
    "est_pi5_ms_low",
    "est_pi5_ms_high",
    "repeat_p50_ms",
)


def flat(cell: dict[str, Any], device: str = "") -> dict[str, Any]:
    """One cell as a flat row (CSV_COLUMNS)."""
    lat = cell.get("latency_ms") or {}
    pipe = cell.get("pipeline") or {}
    pi4 = cell.get("est_pi4_ms") or [None, None]
    pi5 = cell.get("est_pi5_ms") or [None, None]
    row = {
        "device": device,
        "device_type": cell.get("device"),
        "mean_ms": lat.get("mean"),
        "std_ms": lat.get("std"),
        "p50_ms": lat.get("p50"),
        "p90_ms": lat.get("p90"),
        "p99_ms": lat.get("p99"),
        "min_ms": lat.get("min"),
        "max_ms": lat.get("max"),
        "runs": lat.get("n"),
        "pipeline_fps": pipe.get("fps"),
        "est_pi4_ms_low": pi4[0],
        "est_pi4_ms_high": pi4[1],
        "est_pi5_ms_low": pi5[0],
        "est_pi5_ms_high": pi5[1],
    }
    for key in CSV_COLUMNS:
        if key not in row:
            row[key] = cell.get(key)
    if isinstance(row["input_size"], (list, tuple)):
        row["input_size"] = "x".join(str(v) for v in row["input_size"])
    if isinstance(row["repeat_p50_ms"], (list, tuple)):
        row["repeat_p50_ms"] = " ".join(f"{v:.4g}" for v in row["repeat_p50_ms"])
    return row


def to_csv(runs: Iterable[dict[str, Any]]) -> str:
    """CSV text of all cells of one or more results objects."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for run in runs:
        for cell in run["cells"]:
            writer.writerow(flat(cell, run["device"]["name"]))
    return buf.getvalue()


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short strings: 3 significant digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def fmt_size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def fmt_range(pair: list[float] | None) -> str:
    return "-" if not pair else f"~{fmt(pair[0], 2)}-{fmt(pair[1], 2)}"


def fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


TABLE_HEADER = (
    "variant",
    "backend",
    "thr",
    "status",
    "size",
    "params",
    "MACs",
    "IoU",
    "CorLoc",
    "load ms",
    "1st ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "FPS",
    "RSS MB",
    "video FPS",
    "Pi4 est. ms",
    "Pi5 est. ms",
)


def table_row(cell: dict[str, Any]) -> list[str]:
    """The cells of one row of the human table (TABLE_HEADER)."""
    lat = cell.get("latency_ms") or {}
    backend = cell["backend"] or "-"
    if cell.get("provider"):
        backend += f" ({str(cell['provider']).replace('ExecutionProvider', '')})"
    status = cell["status"]
    return [
        cell["variant"],
        backend,
        fmt(cell.get("threads")),
        status,
        fmt_size(cell.get("size_bytes")),
        fmt_count(cell.get("params")),
        fmt_count(cell.get("macs")),
        fmt(cell.get("mean_iou")),
        fmt(cell.get("corloc")),
        fmt(cell.get("load_ms")),
        fmt(cell.get("first_ms")),
        fmt(lat.get("p50")),
        fmt(lat.get("p90")),
        fmt(lat.get("p99")),
        fmt(cell.get("fps")),
        fmt(cell.get("peak_rss_mb")),
        fmt((cell.get("pipeline") or {}).get("fps")),
        fmt_range(cell.get("est_pi4_ms")),
        fmt_range(cell.get("est_pi5_ms")),
    ]


def reasons(cells: Iterable[dict[str, Any]]) -> list[str]:
    """One line per cell that is not ok: 'variant / backend / threads: status: reason'."""
    out = []
    for cell in cells:
        if cell["status"] != "ok" or cell.get("notes"):
            what = f"{cell['variant']} / {cell['backend']}" + (
                f" / {cell['threads']} thr" if cell.get("threads") else ""
            )
            text = cell.get("reason") or ""
            if cell.get("notes"):
                text = "; ".join(filter(None, [text, *cell["notes"]]))
            out.append(f"{what}: {cell['status']}: {text}")
    return out


def to_markdown(run: dict[str, Any]) -> str:
    """A Markdown table of one run, with the device line and the reasons below it."""
    fp = run["device"].get("fingerprint", {})
    lines = [
        f"Device: **{run['device']['name']}** ({fp.get('cpu', '?')}, {fp.get('arch', '?')}, "
        f"{fp.get('cores_logical', '?')} cores, {fp.get('os', '?')}, "
        f"Python {fp.get('python', '?')}); "
        f"{run['created']}",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "|".join("---" if i < 4 else "---:" for i in range(len(TABLE_HEADER))) + "|",
    ]
    for cell in run["cells"]:
        lines.append("| " + " | ".join(s.replace("|", "/") for s in table_row(cell)) + " |")
    notes = reasons(run["cells"])
    if notes:
        lines += ["", *[f"- {line}" for line in notes]]
    lines += [
        "",
        "Latency: milliseconds of the model call alone after warm-up (median = p50). "
        "Pi4/Pi5 columns are ESTIMATES scaled from published figures by MACs, not measurements.",
    ]
    return "\n".join(lines) + "\n"
