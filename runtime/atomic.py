"""The one way edgeloc writes a file: whole or not at all, never over one of its inputs.

``staged(path)`` yields a temporary path in the destination's folder (same file system, so
the final ``os.replace`` is atomic) and renames it into place only when the block finishes;
an exception or Ctrl-C removes it. A process killed outright (SIGKILL, power loss) cannot
clean up, so every temporary name carries the writer's process id
(``.<pid>-<random>.edgeloc-tmp.<name>``) and the next write into that folder removes
the leftovers of processes that are gone. Scratch folders (a SavedModel on its way to TFLite,
a benchmark's eval set) follow the same rule under one folder of the system temp dir
(``scratch_dir``). Stdlib only: the runtime, the data layer, training, export and the
benchmarks all import it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runtime.errors import UserError

log = logging.getLogger(__name__)

TMP_MARK = ".edgeloc-tmp"
_TMP_RE = re.compile(r"^\.(\d+)-[0-9a-f]+" + re.escape(TMP_MARK) + r"\.")
_SCRATCH = "edgeloc-scratch"
_STALE_S = 24 * 3600.0  # where a process id cannot be checked (Windows): a day old is stale


def _stale(path: Path, pid: int) -> bool:
    """Whether the writer of a temporary file is gone (POSIX: its process id is not alive)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there: go by age
        try:
            return time.time() - path.stat().st_mtime > _STALE_S
        except OSError:
            return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: someone else's live process
        return False
    return False


def remove_leftovers(folder: str | Path) -> int:
    """Remove temporary files and scratch folders of dead writers in ``folder``; count them."""
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        match = _TMP_RE.match(entry.name)
        if match is None or not _stale(entry, int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed += 1
        except OSError:
            continue  # gone already, or not ours to remove
    if removed:
        log.info("removed %d leftover temporary file(s) of killed writers in %s", removed, folder)
    return removed


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside ``path``, ending in its whole name (``.weights.h5``,
    ``.keras``, ``.png``: writers that check the suffix accept it)."""
    token = secrets.token_hex(4)
    return path.with_name(f".{os.getpid()}-{token}{TMP_MARK}.{path.name}")


@contextlib.contextmanager
def staged(path: str | Path, *, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The block writes the temporary file itself (``tmp.write_bytes``, ``model.save(tmp)``,
    ``fig.savefig(tmp)``); it may also check it there before it replaces ``path``.
    """
    path = Path(path)
    remove_leftovers(path.parent)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, mode & ~_umask())
            os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with staged(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with staged(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def scratch_root() -> Path:
    """The folder under the system temp dir that holds every edgeloc scratch folder."""
    root = Path(tempfile.gettempdir()) / f"{_SCRATCH}-{_uid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private scratch folder, removed afterwards; those of killed processes go next time."""
    root = scratch_root()
    remove_leftovers(root)
    folder = temp_name(root / prefix)
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_not_input(
    outputs: Path | Iterable[Path],
    inputs: Iterable[Path],
    *,
    folders: Iterable[Path] = (),
    flag: str = "--out",
) -> None:
    """Refuse to write over an input: raise ``UserError`` if an output is one of ``inputs``
    (the same file, also through links) or an existing file inside one of ``folders`` (data
    folders whose files the command reads)."""
    outs = [Path(outputs)] if isinstance(outputs, (str, os.PathLike)) else list(outputs)
    files = [Path(p) for p in inputs]
    dirs = [Path(f).resolve() for f in folders]
    for out in outs:
        target = out.expanduser().resolve()
        for src in files:
            if _same(target, src):
                raise UserError(
                    f"{flag} {out} is one of this command's inputs ({src}); writing there "
                    "would destroy it: pass another path"
                )
        if target.is_file():
            for folder in dirs:
                if folder == target or folder in target.parents:
                    raise UserError(
                        f"{flag} {out} is a file of the input data {folder}; writing there "
                        "would destroy it: pass a path outside the data"
                    )


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare the names
        return a == b.expanduser().resolve()


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "TMP_MARK",
    "check_not_input",
    "remove_leftovers",
    "scratch_dir",
    "staged",
    "write_bytes",
    "write_json",
    "write_text",
]
