"""Shared bits of the runtime CLIs: default model, logging through rich, error exits."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from runtime.models import DEFAULT_MODEL  # package data: found after any install

EXIT_USAGE = 2

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """Library logs and warnings as short rich lines on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_time=False, show_path=False)],
        force=True,
    )
    log = logging.getLogger("edgeloc")
    warnings.showwarning = lambda msg, *a, **k: log.warning("%s", msg)


def resolve_model(model: str | None) -> Path:
    """``--model`` or the default int8 model; a missing default says how to build it."""
    if model:
        return Path(model).expanduser()
    if not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(
            f"default model {DEFAULT_MODEL} is missing; run `make models` or pass --model PATH"
        )
    return DEFAULT_MODEL


def fail(err: BaseException) -> int:
    """Print a user mistake as one line and return the usage exit code."""
    console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return EXIT_USAGE
