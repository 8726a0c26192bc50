"""The verification table the export CLIs print: the Keras reference row, then one per file."""

from __future__ import annotations

from typing import Any

from export.verify import ExportResult, Holdout


def keras_row(holdout: Holdout, size_bytes: int | None) -> dict[str, Any]:
    """The reference row of the table: the Keras float model itself."""
    iou = holdout.iou(holdout.keras_box)
    return {
        "format": "keras",
        "precision": "fp32",
        "size": size_bytes,
        "mean_iou": float(iou.mean()),
        "corloc": float((iou >= 0.5).mean()),
        "iou_drop": 0.0,
        "max_box_diff": 0.0,
        "score_agreement": 1.0,
        "status": "reference",
    }


def table(rows: list[dict[str, Any]], title: str = "Export verification") -> Any:
    """A rich table of verification rows (dicts from ``keras_row`` and ``row``)."""
    from rich.table import Table

    t = Table(title=title)
    for name in (
        "format",
        "precision",
        "size",
        "mean IoU",
        "CorLoc",
        "IoU drop",
        "max box diff",
        "score agree",
        "status",
    ):
        t.add_column(name, justify="left" if name in ("format", "precision", "status") else "right")
    for r in rows:

        def num(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            return "-" if r.get(key) is None else format(r[key], fmt)

        status = r.get("status", "")
        style = (
            "green" if status == "ok" else "red" if status.startswith(("FAILED", "error")) else ""
        )
        t.add_row(
            r["format"],
            r["precision"],
            human_size(r.get("size")),
            num("mean_iou", ".4f"),
            num("corloc", ".3f"),
            num("iou_drop", "+.4f"),
            num("max_box_diff", ".4f"),
            num("score_agreement", ".1%"),
            f"[{style}]{status}[/]" if style else status,
        )
    return t


def row(result: ExportResult) -> dict[str, Any]:
    """A table row from an ExportResult (verified or not)."""
    v = result.verification
    base = {"format": result.format, "precision": result.precision, "size": result.size_bytes}
    if v is None:
        return {**base, "status": "ok (not verified)"}
    return {
        **base,
        "mean_iou": v.mean_iou,
        "corloc": v.corloc,
        "iou_drop": v.iou_drop,
        "max_box_diff": v.max_box_diff,
        "score_agreement": v.score_agreement,
        "status": v.status,
    }


def human_size(n: float | None) -> str:
    """Bytes as B, KB, MB or GB."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
