"""PNG plots of benchmark results; only when matplotlib is importable (never on a lean Pi)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether matplotlib is installed (plots are skipped without it)."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _save(fig: Any, path: Path) -> None:
    """Write the figure whole or not at all (the temporary name keeps the .png suffix)."""
    from runtime.atomic import staged  # noqa: PLC0415

    with staged(path) as tmp:
        fig.savefig(tmp, dpi=110)
    _plt().close(fig)


def _plt() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _label(cell: dict[str, Any], device: str | None = None) -> str:
    backend = cell["backend"] + (
        f"/{cell['provider'].replace('ExecutionProvider', '')}" if cell.get("provider") else ""
    )
    thr = f" {cell['threads']}t" if cell.get("threads") else ""
    return (f"{device}: " if device else "") + f"{cell['variant']} [{backend}{thr}]"


def _timed(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for c in cells
        if isinstance(c.get("latency_ms"), dict) and c["latency_ms"].get("quantiles")
    ]


def latency_distribution(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Box plot per cell from the stored percentiles: box p25-p75, whiskers p1-p99, line p50."""
    rows = [
        (c, r["device"]["name"] if len(runs) > 1 else None)
        for r in runs
        for c in _timed(r["cells"])
    ]
    if not rows:
        return None
    plt = _plt()
    stats = []
    for cell, device in rows:
        q = cell["latency_ms"]["quantiles"]
        stats.append(
            {
                "label": _label(cell, device),
                "med": q[50],
                "q1": q[25],
                "q3": q[75],
                "whislo": q[1],
                "whishi": q[99],
                "fliers": [q[0], q[100]],
            }
        )
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(stats) + 1.5))
    ax.bxp(stats, vert=False, showfliers=True, flierprops={"marker": ".", "markersize": 3})
    ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (log scale; box p25-p75, whiskers p1-p99, dots min/max)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return path


def tradeoff(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Median latency vs mean IoU: the fastest cell of each variant on each device.

    Colour = variant, marker = device; the legend names the backend and threads of the point.
    """
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for cell in _timed(run["cells"]):
            if cell.get("mean_iou") is None:
                continue
            key = (run["device"]["name"], cell["variant"])
            if key not in best or cell["latency_ms"]["p50"] < best[key]["latency_ms"]["p50"]:
                best[key] = cell
    if not best:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    devices = list(dict.fromkeys(d for d, _ in best))
    variants = list(dict.fromkeys(v for _, v in best))
    markers = "os^Dv<>pPX*h"
    for (device, variant), cell in best.items():
        ax.scatter(
            cell["latency_ms"]["p50"],
            cell["mean_iou"],
            color=f"C{variants.index(variant) % 10}",
            marker=markers[devices.index(device) % len(markers)],
            s=50,
            label=_label(cell, device if len(devices) > 1 else None),
        )
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log scale)")
    ax.set_ylabel("mean IoU on the eval set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _save(fig, path)
    return path


def device_comparison(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars: median latency of each (variant, backend, threads) on each device."""
    keys: dict[tuple, dict[str, float]] = {}
    for run in runs:
        for cell in _timed(run["cells"]):
            key = (cell["variant"], cell["backend"], cell.get("provider"), cell.get("threads"))
            keys.setdefault(key, {})[run["device"]["name"]] = cell["latency_ms"]["p50"]
    if not keys:
        return None
    plt = _plt()
    devices = [r["device"]["name"] for r in runs]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(keys) * max(1, len(devices)) + 1.5))
    height = 0.8 / max(1, len(devices))
    for i, device in enumerate(devices):
        ys = [k + i * height for k in range(len(keys))]
        xs = [v.get(device, 0) for v in keys.values()]
        ax.barh(ys, xs, height=height, label=device, color=f"C{i}")
    names = [
        f"{v} [{b}{'/' + p.replace('ExecutionProvider', '') if p else ''}{f' {t}t' if t else ''}]"
        for v, b, p, t in keys
    ]
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(keys))], names, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log scale)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return path
