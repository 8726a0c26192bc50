"""Paths the CLIs read and write, checked with one-line errors: inputs that must exist (and
are not symlink loops or forbidden folders), output files and output folders.

Writing itself, and the rule that no output may be one of the inputs, are in
``runtime.atomic``.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import UserError


def stat_path(path: str | Path, what: str, hint: str = "") -> os.stat_result:
    """``os.stat`` with one-line errors: missing, a symlink loop, a folder we may not enter."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        return path.stat()
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found{tail}") from None
    except OSError as err:  # ELOOP, EACCES on a parent, ENAMETOOLONG: not "not found"
        raise UserError(f"cannot open {what} {path}: {err.strerror or err}{tail}") from None


def check_output_file(path: str | Path, flag: str) -> Path:
    """An output file name: not a folder, in a folder that exists."""
    path = Path(path).expanduser()
    try:
        is_dir, parent_is_dir = path.is_dir(), path.parent.is_dir()
    except OSError as err:  # a name too long for the file system
        raise UserError(f"cannot use {flag} {path}: {err.strerror or err}; pass another "
                        "name") from None
    if is_dir:
        raise UserError(f"{flag} {path} is a folder; pass a file name such as {path / 'out'}")
    if not parent_is_dir:
        raise UserError(f"folder {path.parent} for {flag} does not exist; create it first")
    return path


def check_output_folder(path: str | Path, flag: str) -> Path:
    """An output folder, created when missing; an existing file there is an error."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)  # FileExistsError: a file of that name
    except FileExistsError:
        raise UserError(f"{flag} {path} is a file, not a folder; pass a folder name") from None
    except OSError as err:  # a name too long, a read-only or missing parent, a file above
        raise UserError(f"cannot create folder {path} for {flag}: {err.strerror or err}") from None
    return path


__all__ = ["check_output_file", "check_output_folder", "stat_path"]
