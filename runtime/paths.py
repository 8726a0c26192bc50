"""Paths the CLIs read and write: never write over an input, replace outputs atomically.

Every CLI that writes (``runtime.infer --out/--draw``, ``runtime.webcam --save``,
``train.label --out``, and the export and benchmark ``--out``) calls ``refuse_overwrite``
with the files it will write and the files it reads, before it writes a byte: one
``os.path.samefile`` rule (same device and inode, so hard links and symlinks count too).
Outputs are written to a hidden temporary file beside the target and moved over it with
``os.replace``, so a reader never sees half a file and a failed run leaves the old one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

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


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def refuse_overwrite(
    targets: Iterable[str | Path], inputs: Iterable[str | Path], flag: str
) -> None:
    """Raise ``UserError`` when a file about to be written (``targets``) is one of ``inputs``.

    ``targets`` are the exact files the command will write (for a folder output such as
    ``--draw DIR``, every file name it would create there); ``flag`` names the output in
    the message (``"--out"``, ``"--draw photos"``). Files are compared by device
    and inode, the ``os.path.samefile`` rule, so ``./a.jpg``, a symlink or a hard link to
    it all count as the same file.
    """
    seen: dict[tuple[int, int], Path] = {}
    for item in inputs:
        key = _identity(Path(item))
        if key is not None:
            seen.setdefault(key, Path(item))
    if not seen:
        return
    for target in targets:
        key = _identity(Path(target))
        if key in seen:
            source = seen[key]
            via = "" if Path(target) == source else f" (it would write {target})"
            raise UserError(
                f"{flag} would overwrite the input {source}{via}; write the output "
                "somewhere else"
            )


def check_output_file(path: str | Path, flag: str) -> Path:
    """An output file name: not a folder, in a folder that exists."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; pass a file name such as {path / 'out'}")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} for {flag} does not exist; create it first")
    return path


def check_output_folder(path: str | Path, flag: str) -> Path:
    """An output folder, created when missing; an existing file there is an error."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; pass a folder name")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create folder {path} for {flag}: {err.strerror or err}") from None
    return path


def temp_beside(path: Path) -> Path:
    """A hidden temporary name next to ``path`` that keeps its suffix (writers pick the
    container from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _replaceable(path: Path) -> bool:
    """Whether ``path`` is written by replace: a regular file or a new name. A device or
    FIFO (``/dev/null``, a pipe from ``>(...)``) is written in place instead, never replaced."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return True


def commit(temp: Path, path: Path) -> None:
    """Move a finished temporary file over ``path`` (through a symlink, not over it)."""
    os.replace(temp, os.path.realpath(path))


@contextlib.contextmanager
def atomic_output(
    path: str | Path, flag: str, *, binary: bool = False, newline: str | None = None
) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file that replaces it on success.

    An exception inside the block removes the temporary file and leaves ``path`` as it
    was; a device or FIFO target is written directly. Errors opening the file (a read-only
    folder, ``/proc``) are ``UserError`` naming ``flag``.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    direct = not _replaceable(real)
    target = real if direct else temp_beside(real)
    try:
        text = {} if binary else {"encoding": "utf-8", "newline": newline}
        handle = open(target, "wb" if binary else "w", **text)  # noqa: SIM115 (closed below)
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno in (errno.ENOENT, errno.EACCES, errno.EROFS, errno.EPERM):
            why += " (the folder is not writable)"
        raise UserError(f"cannot write {flag} {path}: {why}; pass a path in a writable folder")
    try:
        with handle:
            yield handle
    except BaseException:
        if not direct:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    if not direct:
        commit(target, path)


def write_bytes_atomic(path: str | Path, data: bytes, flag: str) -> None:
    """Write ``data`` to ``path`` through a temporary file (see ``atomic_output``)."""
    with atomic_output(path, flag, binary=True) as handle:
        handle.write(data)


__all__ = [
    "atomic_output",
    "check_output_file",
    "check_output_folder",
    "commit",
    "refuse_overwrite",
    "stat_path",
    "temp_beside",
    "write_bytes_atomic",
]
