"""Shared bits of the runtime CLIs: common flags, logging through rich, stops and error exits."""

from __future__ import annotations

import _thread
import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from data.images import DEFAULT_MAX_PIXELS
from runtime.backends import format_of
from runtime.errors import UserError
from runtime.modelfile import MAX_THREADS, check_model_path

from runtime.models import DEFAULT_MODEL, SHIPPED, shipped  # package data: found after any install

EXIT_USAGE = 2
EXIT_CTRL_C, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as shells report them
EXIT_SIGPIPE = 141  # the reader of stdout went away (`| head -1`)

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


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags every runtime CLI takes: model, engine, threads, integrity, image limit."""
    parser.add_argument(
        "--model", help="a .tflite or .onnx model, or a shipped one by name: cat, face "
        "(default: cat, i.e. runtime/models/cat_int8.tflite; cat_int8.onnx with --backend onnx)"
    )
    parser.add_argument(
        "--threads",
        type=int_in(1, MAX_THREADS),
        help=f"engine threads, 1..{MAX_THREADS} (default: cores, at most 4)",
    )
    parser.add_argument("--backend", default="auto", help="auto, tflite, onnx or a backend name")
    parser.add_argument("--providers", help="ONNX Runtime providers: cuda,tensorrt,openvino,coreml")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="load a model whose embedded digest does not match (files edited by other tools)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int_in(1),
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images over this many pixels, read from the header "
        f"(default {DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def refuse_empty(args: argparse.Namespace, names: dict[str, str] | None = None) -> None:
    """Refuse a flag given as '' or spaces: it would silently mean the current folder or
    the default. ``names`` names positionals in the message (``{"inputs": "an input"}``)."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            what = (names or {}).get(dest, f"--{dest.replace('_', '-')}")
            raise UserError(f"{what} is empty ({values[0]!r}); give it a value or leave it out")


def importable(module: str) -> bool:
    """Whether a module can be found, without importing it (a broken finder counts as no)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(what: str, modules: Sequence[str] = ("keras", "tensorflow")) -> None:
    """Raise UserError when ``what`` (training, export) needs modules of the ``train`` extra
    that a runtime-only install lacks: one line with the pip command, not an import traceback."""
    missing = [m for m in modules if not importable(m)]
    if missing:
        raise UserError(
            f"{what} needs {' and '.join(missing)}, which this install lacks (the runtime alone "
            "runs models): pip install 'edgeloc[train]' (pip install -e '.[train]' in a clone)"
        )


def drop_stdout() -> None:
    """Point stdout at /dev/null after it failed (a closed pipe, a full disk), so Python's
    final flush does not fail again with a traceback (the idiom of the Python docs)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def resolve_model(model: str | None, backend: str = "auto") -> Path:
    """``--model`` (a path, or the name of a shipped model: ``cat``, ``face``) or the default
    int8 model; a missing shipped model says how to build it. A shipped model asked for with
    an ONNX backend (``--backend onnx``) is its ONNX twin, which ships beside it."""
    if model and (model not in SHIPPED or Path(model).exists()):  # a file named "face" wins
        path = Path(model).expanduser()
        if not path.exists() and not path.suffix and len(path.parts) == 1:
            raise UserError(f"no model file and no shipped model named {model!r}; shipped: "
                            f"{', '.join(SHIPPED)}, or pass --model PATH to a .tflite or .onnx file")
        check_model_path(path)  # `--model .` is no file to name a sidecar or an output after
        return path
    fmt = format_of(backend) or "tflite"  # an unknown backend is refused at load, naming the valid
    path = shipped(model, fmt) if model else DEFAULT_MODEL.with_suffix(f".{fmt}")
    if not path.is_file():
        raise UserError(f"shipped model {path} is missing; run `make models` or pass --model PATH")
    return path


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so a run still ends through its summary."""


def stop_reason(err: KeyboardInterrupt) -> str:
    """What stopped a run: "SIGTERM" or "Ctrl-C"."""
    return "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"


def stop_exit_code(reason: str) -> int:
    """The exit code of a run stopped by ``reason`` (shell convention: 128 + signal)."""
    return EXIT_SIGTERM if reason == "SIGTERM" else EXIT_CTRL_C


DEFER_S = 0.05  # how long a stop that arrived in TensorFlow's frames waits before it is raised

# The sigterm_stops blocks now running (innermost last): each one's recorded stops and its
# deferred stop's timer, if one waits.
_ACTIVE: list[tuple[list[str], list[threading.Timer]]] = []


_LOCK = threading.Lock()  # a deferred stop's timer against raise_if_stopped cancelling it


def _redeliver(waiting: list[threading.Timer], signum: int) -> None:
    """The deferred stop's timer: deliver the signal again, unless it was raised meanwhile
    (``raise_if_stopped`` empties ``waiting``; ``cancel`` alone loses a timer already awake)."""
    with _LOCK:
        if waiting:
            _thread.interrupt_main(signum)


def _cancel(waiting: list[threading.Timer]) -> bool:
    """Cancel a deferred stop's timer so it cannot redeliver; whether one was waiting."""
    with _LOCK:
        pending = bool(waiting)
        for timer in waiting:
            timer.cancel()
        waiting.clear()
    return pending


def _interrupt(reason: str) -> KeyboardInterrupt:
    return Terminated() if reason == "SIGTERM" else KeyboardInterrupt()


def _native_caller(frame: Any) -> bool:
    """Is Python at a frame of TensorFlow's own package, which its C++ code may be calling
    into? Its nest utilities call ``isinstance`` (an ABC's ``__instancecheck__``) and
    ``__import__`` from C++: an exception raised there comes out as a printed SystemError
    traceback, or not at all. (Keras's TensorFlow backend is plain Python: not deferred.)"""
    tf = sys.modules.get("tensorflow")  # not imported: no such frame can be running
    home = os.path.dirname(getattr(tf, "__file__", None) or "")
    if not home:
        return False
    while frame is not None and frame.f_code.co_filename.startswith("<frozen "):  # abc, importlib
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(home + os.sep)


@contextlib.contextmanager
def sigterm_stops(stops: list[str] | None = None) -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` (main thread only); restored after.

    With ``stops``, Ctrl-C is taken too (unless ignored) and each stop's reason ("SIGTERM",
    "Ctrl-C") is appended: where library code turns the interrupt into another exception,
    the caller still knows it was one. A stop that arrives where TensorFlow's native code
    may be the caller is raised a moment later instead, outside it (or as the block ends),
    and ``raise_if_stopped`` raises a stop that native code swallowed anyway, at the points
    where a file would be committed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    recorded: list[str] = [] if stops is None else stops
    waiting: list[threading.Timer] = []  # a deferred stop not raised yet

    def stop(signum: int, frame: Any) -> None:
        reason = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if not waiting:  # (a deferred stop raised again is the same stop)
            recorded.append(reason)
        waiting.clear()
        if _native_caller(frame):
            waiting.append(threading.Timer(DEFER_S, _redeliver, (waiting, signum)))
            waiting[0].daemon = True
            waiting[0].start()
            return
        raise _interrupt(reason)

    handled = [signal.SIGTERM]
    if stops is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    previous = {s: signal.signal(s, stop) for s in handled}
    _ACTIVE.append((recorded, waiting))
    try:
        yield
    finally:
        pending = _cancel(waiting)
        for s, handler in previous.items():
            signal.signal(s, handler)
        _ACTIVE.pop()
    if pending:  # the block ended while a deferred stop waited: it still stops the run
        raise _interrupt(recorded[-1])


def raise_if_stopped() -> None:
    """Raise the stop a running ``sigterm_stops`` block recorded, if any: call it before
    committing a result, so a stop that library code swallowed does not end as a success."""
    for recorded, waiting in _ACTIVE:
        if recorded:
            _cancel(waiting)  # raised here: the deferred one must not raise it again
            raise _interrupt(recorded[0])


def fail(err: BaseException) -> int:
    """Print a user mistake as one line and return the usage exit code."""
    console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    return EXIT_USAGE
