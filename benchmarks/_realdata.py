"""The real-photo folders the accuracy benchmarks score on: ``--cats-dir`` and ``--faces-dir``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def add_real_data_args(parser: argparse.ArgumentParser) -> None:
    """``--cats-dir`` (a VOC folder) and ``--faces-dir`` (a CSV folder), both optional."""
    parser.add_argument(
        "--cats-dir", help="a VOC folder of real cats (e.g. ../shared/datasets/cats/train)"
    )
    parser.add_argument(
        "--faces-dir", help="a CSV folder of real faces (e.g. ../shared/datasets/faces/train)"
    )


def bad_real_data(args: argparse.Namespace, console: Console) -> bool:
    """Say so and return True when ``--cats-dir`` or ``--faces-dir`` is given but is no
    folder or holds no VOC / CSV data set: found before anything trains, not after the
    runs before it (the demo: 10 minutes)."""
    from data.catalog import open_source  # noqa: PLC0415  (the lean data layer, no TF)

    for flag, path, fmt in (("--cats-dir", args.cats_dir, "voc"),
                            ("--faces-dir", args.faces_dir, "csv")):
        if not path:
            continue
        if not Path(path).is_dir():
            console.print(f"[red]error:[/red] {flag} {path} is not a folder")
            return True
        try:
            open_source(fmt, data_dir=path, split="all")
        except (ValueError, OSError) as err:  # UserError too
            console.print(f"[red]error:[/red] {flag} {path}: {err}", highlight=False)
            return True
    return False


def bad_out(args: argparse.Namespace, console: Console) -> bool:
    """--out may not overlap a data folder: runs and group subsets are rebuilt under it."""
    out = Path(args.out).expanduser().resolve()
    for flag, given in (("--cats-dir", args.cats_dir), ("--faces-dir", args.faces_dir)):
        if not given:
            continue
        data = Path(given).expanduser().resolve()  # a folder (bad_real_data checked)
        if out == data or data in out.parents or out in data.parents:
            console.print(f"[red]error:[/red] --out {args.out} overlaps {flag} {given}; the "
                          "benchmark rebuilds folders under --out: pass a folder outside the data")
            return True
    return False
