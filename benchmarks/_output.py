"""Terminal and file output of the benchmark CLIs: rich tables, progress, files, plots."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks import _plots, _schema

_STATUS_STYLE = {"ok": "green", "accuracy_failed": "yellow", "error": "red", "skipped": "dim"}


def console() -> Console:
    """stdout console; wide when piped (the table has many columns)."""
    con = Console(highlight=False)
    if not con.is_terminal:
        con = Console(highlight=False, width=240)
    return con


@contextlib.contextmanager
def progress(con: Console) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar; yields the ``on_cell(done, total, description)`` callback."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=True,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, what: str) -> None:
        if not bar.live.is_started:  # start on the first cell: errors before it print cleanly
            bar.start()
        bar.update(task, completed=done, total=total, description=what)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "device"


def default_out(device: str) -> Path:
    return Path("results") / f"latency-{slug(device)}.json"


PLOTS = (("_latency.png", _plots.latency_distribution), ("_tradeoff.png", _plots.tradeoff))


def output_paths(out: Path) -> list[Path]:
    """Every file ``write_all`` may write for ``--out``: RESULTS.json, .csv, .md and plots."""
    out = Path(out).with_suffix(".json")
    return [out, out.with_suffix(".csv"), out.with_suffix(".md")] + [
        out.with_name(out.stem + suffix) for suffix, _ in PLOTS
    ]


def write_all(results: dict[str, Any], out: Path, plots: bool = True) -> list[Path]:
    """RESULTS.json, .csv, .md and (with matplotlib) _latency.png and _tradeoff.png."""
    out = Path(out).with_suffix(".json")
    paths = [_schema.write_json(results, out)]
    paths.append(_schema.write_atomic(out.with_suffix(".csv"), _schema.to_csv([results])))
    paths.append(_schema.write_atomic(out.with_suffix(".md"), _schema.to_markdown(results)))
    if plots and _plots.available():
        for suffix, fn in PLOTS:
            png = fn([results], out.with_name(out.stem + suffix))
            if png:
                paths.append(png)
    return paths


def cell_table(cells: list[dict[str, Any]], title: str) -> Table:
    """A rich table of cells (the same columns as the Markdown table)."""
    rows = [_schema.table_row(cell) for cell in cells]
    keep = [i for i in range(len(_schema.TABLE_HEADER)) if i < 4 or any(r[i] != "-" for r in rows)]
    table = Table(title=title, title_justify="left", header_style="bold")
    for i in keep:
        table.add_column(
            _schema.TABLE_HEADER[i], justify="left" if i < 4 else "right", no_wrap=i < 4
        )
    for cell, row in zip(cells, rows, strict=True):
        row[3] = f"[{_STATUS_STYLE[cell['status']]}]{row[3]}[/]"
        table.add_row(*[row[i] for i in keep])
    return table


def print_run(con: Console, results: dict[str, Any]) -> None:
    """The run's table, the reasons for non-ok cells, the eval set and the estimate caveat."""
    fp = results["device"]["fingerprint"]
    title = (
        f"{results['device']['name']} - {fp['cpu']}, {fp['arch']}, {fp['cores_logical']} cores, "
        f"{', '.join(fp['cpu_features']) or 'no SIMD flags read'}"
    )
    con.print(cell_table(results["cells"], title))
    for line in _schema.reasons(results["cells"]):
        con.print(f"  [dim]{escape(line)}[/dim]")  # reasons name pip extras in brackets
    ev = results["eval"]
    con.print(
        escape(f"eval set: {ev['name']} ({ev['n']} images)"
               if ev["name"] else f"accuracy skipped: {ev['reason']}")
    )
    con.print(
        "[dim]latency = the model call only, after warm-up; Pi4/Pi5 columns are ESTIMATES "
        "scaled from published figures, not measurements[/dim]"
    )
