"""Compare ``runtime.infer`` results of the x86 host and an emulated arm64 board.

Pure logic of ``tools.pi.arm64_check``: match records by image, check label, presence,
box IoU and score against tolerances, and render the tables. Every arm64 timing carried
here is EMULATED (qemu on x86) and is labelled so wherever it is shown or written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.contract import box_iou

IOU_MIN = 0.98
SCORE_TOL = 0.03  # int8 kernels on ARM may round a few quantization steps differently
EMULATED = "EMULATED under qemu on x86: not a speed figure"
TIMING_KEYS = ("latency_ms", "total_ms")


@dataclass
class Row:
    """One image, one model, one emulated board: x86 vs arm64."""

    model: str
    target: str  # emulated board and userland, e.g. "pi5 bookworm"
    image: str
    x86_label: str | None = None
    arm64_label: str | None = None
    x86_score: float | None = None
    arm64_score: float | None = None
    x86_box: list[float] | None = None
    arm64_box: list[float] | None = None
    iou: float | None = None
    x86_ms: float | None = None
    arm64_ms_emulated: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the two runs agree."""
        return not self.problems


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a ``runtime.infer`` results file (one JSON object per line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _timing(record: dict[str, Any]) -> float | None:
    for key in TIMING_KEYS:
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def compare(x86: list[dict[str, Any]], arm: list[dict[str, Any]], *, model: str, target: str,
            iou_min: float = IOU_MIN, score_tol: float = SCORE_TOL) -> list[Row]:
    """Match records by image file name and check label, box IoU and score."""
    by_name = {Path(r["image"]).name: r for r in arm if "image" in r}
    rows = []
    for rec in x86:
        name = Path(rec["image"]).name
        row = Row(model, target, name, x86_label=rec.get("label"), x86_score=rec.get("score"),
                  x86_box=rec.get("box"), x86_ms=_timing(rec))
        other = by_name.pop(name, None)
        if other is None:
            row.problems.append("no arm64 result")
        else:
            row.arm64_label, row.arm64_score = other.get("label"), other.get("score")
            row.arm64_box, row.arm64_ms_emulated = other.get("box"), _timing(other)
            row.problems += _differences(row, rec, other, iou_min, score_tol)
        rows.append(row)
    rows += [Row(model, target, name, problems=["no x86 result"]) for name in sorted(by_name)]
    return rows


def _differences(row: Row, x86: dict[str, Any], arm: dict[str, Any], iou_min: float,
                 score_tol: float) -> list[str]:
    problems = [f"{side} error: {rec['error']}" for side, rec in (("x86", x86), ("arm64", arm))
                if rec.get("error")]
    if problems:
        return problems
    if row.x86_label != row.arm64_label:
        problems.append(f"label {row.x86_label!r} != {row.arm64_label!r}")
    # "present" is score >= threshold: a score within tolerance of the threshold may flip it,
    # and a real disagreement already fails the score check, so it is not compared on its own.
    if row.x86_box is None or row.arm64_box is None:
        problems.append("box missing")
    else:
        row.iou = float(box_iou(np.asarray(row.x86_box), np.asarray(row.arm64_box)))
        if row.iou < iou_min:
            problems.append(f"box IoU {row.iou:.3f} < {iou_min}")
    if row.x86_score is None or row.arm64_score is None:
        problems.append("score missing")
    elif abs(row.x86_score - row.arm64_score) > score_tol:
        problems.append(f"score differs by {abs(row.x86_score - row.arm64_score):.3f} > {score_tol}")
    return problems


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(rows: list[Row], model: str) -> Any:
    """A rich table of one model's comparison; arm64 timings are labelled as emulated."""
    from rich.table import Table

    table = Table(title=f"{model}: x86 vs arm64", caption=f"arm64 ms: {EMULATED}")
    for col in ("board", "image", "label", "score x86", "score arm64", "IoU", "x86 ms",
                "arm64 ms (EMULATED)", "result"):
        table.add_column(col, justify="left" if col in ("board", "image", "label", "result")
                         else "right")
    for r in (r for r in rows if r.model == model):
        label = r.x86_label if r.x86_label == r.arm64_label else f"{r.x86_label} / {r.arm64_label}"
        table.add_row(r.target, r.image, str(label), _fmt(r.x86_score, ".4f"),
                      _fmt(r.arm64_score, ".4f"), _fmt(r.iou, ".4f"), _fmt(r.x86_ms, ".2f"),
                      _fmt(r.arm64_ms_emulated, ".1f"),
                      "[green]ok[/]" if r.ok else "[red]" + "; ".join(r.problems) + "[/]")
    return table


def latency_table(report: dict[str, Any]) -> Any:
    """The ``--profile pi`` cells of each side: status and p50 (arm64 ones EMULATED)."""
    from rich.table import Table

    table = Table(title="benchmarks.latency --profile pi", caption=f"arm64 ms: {EMULATED}")
    for col in ("run", "variant", "backend", "threads", "status", "p50 ms"):
        table.add_column(col, justify="right" if col in ("threads", "p50 ms") else "left")
    runs = [("x86", report["latency"].get("x86"))] + [
        (f"arm64 {k} (EMULATED)", v["result"]) for k, v in report["latency"]["arm64"].items()]
    for name, result in runs:
        for cell in (result or {}).get("cells", []):
            p50 = (cell.get("latency_ms") or {}).get("p50")
            table.add_row(name, str(cell.get("variant")), str(cell.get("backend")),
                          str(cell.get("threads") or "-"), str(cell.get("status")), _fmt(p50, ".2f"))
    return table


def markdown_table(rows: list[Row]) -> str:
    """The comparison as a Markdown table (for BENCHMARKS.md)."""
    head = ("| model | board | image | label | score x86 | score arm64 | box x86 (px) | "
            "box arm64 (px) | IoU | ok |\n|---|---|---|---|---|---|---|---|---|---|\n")

    def box(b: list[float] | None) -> str:
        return "-" if b is None else ", ".join(f"{v:.1f}" for v in b)

    return head + "".join(
        f"| {r.model} | {r.target} | {r.image} | {r.x86_label} / {r.arm64_label} | "
        f"{_fmt(r.x86_score, '.4f')} | {_fmt(r.arm64_score, '.4f')} | {box(r.x86_box)} | "
        f"{box(r.arm64_box)} | {_fmt(r.iou, '.4f')} | {'yes' if r.ok else 'NO'} |\n" for r in rows)


def mark_emulated(result: Any) -> dict[str, Any]:
    """Wrap a result from the emulated run so no reader can take its timings as real."""
    return {"emulated": True, "timing_note": EMULATED, "result": result}
