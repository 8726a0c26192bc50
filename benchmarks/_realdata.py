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
    """Say so and return True when ``--cats-dir`` or ``--faces-dir`` is given but no folder."""
    for flag, path in (("--cats-dir", args.cats_dir), ("--faces-dir", args.faces_dir)):
        if path and not Path(path).is_dir():
            console.print(f"[red]error:[/red] {flag} {path} is not a folder")
            return True
    return False
