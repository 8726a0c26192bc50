"""Quiet by default: the start-up chatter of native libraries goes to the debug log.

TensorFlow prints its oneDNN and CPU-feature lines from C++ while it is imported, through
absl before absl is initialized (so ``TF_CPP_MIN_LOG_LEVEL`` does not stop the oneDNN one),
and LiteRT announces its XNNPACK delegate on stderr when an interpreter allocates its tensors.
Python cannot filter those lines, so ``native_output_captured`` points file descriptors 1 and 2
at a temporary file for the duration of a block and logs what landed there at DEBUG level:
a CLI's ``-v`` (DEBUG logging) shows it. ``quiet_tensorflow`` is the one call a CLI that
needs TensorFlow makes first (``python -m train``, ``python -m export``). Stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

_LOCK = threading.RLock()


@contextlib.contextmanager
def native_output_captured() -> Iterator[None]:
    """Send what native code prints to fds 1 and 2 during the block into the debug log."""
    with _LOCK:  # one thread at a time: interleaved redirections would lose the real fds
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:  # no fds 1/2 (a detached service): nothing to silence
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                sink.seek(0)
                text = sink.read().decode(errors="replace").strip()
                if text:
                    log.debug("native output:\n%s", text[-20000:])


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow without its start-up lines (call before anything imports it).

    With ``verbose`` nothing is silenced. Otherwise TensorFlow's C++ INFO and WARNING logs
    are turned off (``TF_CPP_MIN_LOG_LEVEL=2``, unless the user set it), the import runs with
    native output captured (the oneDNN lines) and absl's Python logger keeps to errors.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        try:
            with native_output_captured():
                import tensorflow  # noqa: F401
        except ImportError:
            return  # the caller's own import reports the missing package
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


__all__ = ["native_output_captured", "quiet_tensorflow"]
