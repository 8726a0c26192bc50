"""The one way edgeloc writes a file: whole or not at all, never over one of its inputs.

``staged(path)`` yields a temporary path in the destination's folder (same file system, so
the final ``os.replace`` is atomic) and renames it into place only when the block finishes;
an exception or Ctrl-C removes it; the new file keeps the permissions of the one it
replaces (a private 0600 file stays private). A process killed outright (SIGKILL, power
loss) cannot clean up, so every temporary name carries the writer's process id
(``.<pid>-<random>.edgeloc-tmp.<name>``) and a process's first write into that folder
removes the leftovers of processes that are gone. Scratch folders (a SavedModel on its way to TFLite,
a benchmark's eval set) follow the same rule under one folder of the system temp dir
(``scratch_dir``). Stdlib only: the runtime, the data layer, training, export and the
benchmarks all import it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from runtime.errors import UserError

log = logging.getLogger(__name__)

TMP_MARK = ".edgeloc-tmp"
_TMP_RE = re.compile(r"^\.(\d+)-[0-9a-f]+" + re.escape(TMP_MARK) + r"\.")
_SCRATCH = "edgeloc-scratch"
_STALE_S = 24 * 3600.0  # where a process id cannot be checked (Windows): a day old is stale
_NAME_MAX = 255  # bytes in one file name (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)
_FIFO_WAIT_S = 2.0  # how long --out FIFO waits for its reader (`infer --out p & cat p`)


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


_CLEANED: set[str] = set()  # folders this process has already cleaned before a write


def _clean_once(folder: Path) -> None:
    """``remove_leftovers`` the first time this process writes into ``folder``: a run that
    writes thousands of files into one folder (``infer --draw``) lists it once, not once
    per file."""
    key = os.path.realpath(folder)
    if key not in _CLEANED:
        remove_leftovers(folder)
        _CLEANED.add(key)


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside ``path``, ending in its whole name (``.weights.h5``,
    ``.keras``, ``.png``: writers that check the suffix accept it). A name too long for
    that keeps its end: the temporary name stays within the 255-byte limit of a name."""
    prefix = f".{os.getpid()}-{secrets.token_hex(4)}{TMP_MARK}."
    tail = path.name
    while tail and len(os.fsencode(prefix + tail)) > _NAME_MAX:
        tail = tail[1:]  # drop from the front: the suffixes at the end are what writers check
    return path.with_name(prefix + tail)


@contextlib.contextmanager
def staged(path: str | Path, *, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The block writes the temporary file itself (``tmp.write_bytes``, ``model.save(tmp)``,
    ``fig.savefig(tmp)``); it may also check it there before it replaces ``path``. A new
    file gets ``mode`` less the umask; a file that replaces another keeps that one's mode.
    """
    path = Path(path)
    _clean_once(path.parent)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, mode & ~_umask())
            keep_mode(tmp, path)
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


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as the JSON text every report and run file is written in (a final newline)."""
    return json.dumps(data, indent=indent, default=str) + "\n"


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically."""
    return write_text(path, json_text(data, indent=indent))


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


def identity(path: str | Path | int) -> tuple[int, int] | None:
    """(device, inode) of a path or of an open file descriptor (stdout); None if gone."""
    try:
        info = os.fstat(path) if isinstance(path, int) else Path(path).stat()
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def refuse_overwrite(
    targets: str | Path | int | Iterable[str | Path | int],
    inputs: Iterable[str | Path],
    flag: str = "--out",
    *,
    folders: Iterable[str | Path] = (),
) -> None:
    """Raise ``UserError`` when a file about to be written (``targets``) is one of ``inputs``.

    ``targets`` are the exact files the command will write (for a folder output such as
    ``--draw DIR``, every file name it would create there), or open file descriptors
    (stdout redirected with ``>> a.jpg``); ``flag`` names the output in
    the message (``"--out"``, ``"--draw photos"``). Files are compared by device
    and inode, the ``os.path.samefile`` rule, so ``./a.jpg``, a symlink or a hard link to
    it all count as the same file. An existing file inside one of ``folders`` (data folders
    whose files the command reads) is refused too.
    """
    targets = [targets] if isinstance(targets, (str, os.PathLike, int)) else list(targets)
    for target in targets:
        if isinstance(target, int):
            continue  # a descriptor has no path to place inside a folder
        real = Path(target).expanduser().resolve()
        if real.is_file():
            for folder in (Path(f).expanduser().resolve() for f in folders):
                if folder == real or folder in real.parents:
                    raise UserError(
                        f"{flag} {target} is a file of the input data {folder}; writing there "
                        "would destroy it: pass a path outside the data"
                    )
    seen: dict[tuple[int, int], Path] = {}
    for item in inputs:
        key = identity(Path(item))
        if key is not None:
            seen.setdefault(key, Path(item))
    if not seen:
        return
    for target in targets:
        key = identity(target)
        if key in seen:
            source = seen[key]
            same = isinstance(target, int) or Path(target) == source
            via = "" if same else f" (it would write {target})"
            raise UserError(
                f"{flag} would overwrite the input {source}{via}; write the output "
                "somewhere else"
            )


def _replaceable(path: Path) -> bool:
    """Whether ``path`` is written by replace: a regular file or a new name. A device or
    FIFO (``/dev/null``, a pipe from ``>(...)``) is written in place instead, never replaced."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return True


def keep_mode(temp: Path, path: str | Path) -> None:
    """Give the file about to replace ``path`` the permissions of the file it replaces: a
    private 0600 results file stays private when it is rewritten."""
    try:
        old = os.stat(path)
        if stat.S_ISREG(old.st_mode) and not os.path.isdir(temp):
            os.chmod(temp, old.st_mode & 0o777)  # not set-user-id bits
    except FileNotFoundError:
        pass  # a new file: the default mode (0666 less the umask)


def commit(temp: Path, path: Path) -> None:
    """Move a finished temporary file (from ``temp_name``) over ``path`` (through a symlink,
    not over it), with the permissions of the file it replaces."""
    real = os.path.realpath(path)
    keep_mode(temp, real)
    os.replace(temp, real)


@contextlib.contextmanager
def atomic_output(
    path: str | Path, flag: str, *, binary: bool = False, newline: str | None = None
) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file that replaces it on success.

    An exception inside the block removes the temporary file and leaves ``path`` as it
    was; a device or FIFO target is written directly (a FIFO nobody reads is an error, not
    a hang). Errors opening the file (a read-only folder, ``/proc``) are ``UserError``
    naming ``flag``.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    direct = not _replaceable(real)
    if not direct:
        _clean_once(real.parent)
    target = real if direct else temp_name(real)
    try:
        text = {} if binary else {"encoding": "utf-8", "newline": newline}
        if direct:  # a FIFO without a reader would block this open forever
            handle = os.fdopen(_open_direct(target, f"{flag} {path}"), "wb" if binary else "w",
                               **text)
        else:
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


def _open_direct(target: Path, shown: str) -> int:
    """Open a device or FIFO for writing without blocking: a FIFO nobody reads is a
    ``UserError`` after ``_FIFO_WAIT_S`` (its reader may start just after us), not a hang."""
    nonblock = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to wait on
    deadline = time.monotonic() + _FIFO_WAIT_S
    while True:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nonblock, 0o666)
            break
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise UserError(f"{shown} is a FIFO that nobody reads; start its reader "
                                "first or write to a file") from None
            time.sleep(0.05)
    if nonblock:
        import fcntl  # POSIX only, as O_NONBLOCK is

        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~nonblock)
    return fd


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "TMP_MARK",
    "atomic_output",
    "commit",
    "identity",
    "json_text",
    "refuse_overwrite",
    "remove_leftovers",
    "scratch_dir",
    "staged",
    "temp_name",
    "write_bytes",
    "write_json",
    "write_text",
]
