"""A model file before an engine sees it: bounded, typed, checked against its digest.

A model path must be a regular file (a FIFO or device is refused from ``stat``, so
nothing blocks or streams forever) under ``MAX_MODEL_BYTES``; its format is told from its
bytes, and the digest edgeloc embeds at export (``runtime.integrity``) is checked before
any engine parses it, so a damaged file is refused instead of answering with confidence.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtime import integrity
from runtime.contract import read_tflite_metadata
from runtime.errors import UserError
from runtime.paths import stat_path

# Refused unread above this: edgeloc models are 0.1-10 MB, and one ONNX protobuf cannot
# pass 2 GiB anyway. Stops `--model /dev/zero`-like mistakes before memory runs out.
MAX_MODEL_BYTES = 1 << 30
# TFLite segfaults and ONNX Runtime hangs creating 100,000 threads; 64 is far above any
# useful count for a model this size (the gain stops at the core count).
MAX_THREADS = 64
_HINT = "pass --model PATH to a .tflite or .onnx file (`make models` builds the defaults)"
# An ONNX ModelProto opens with ir_version (field 1, a varint: 0x08, value) and then one of
# its other fields: producer_name/version, domain, model_version, doc_string, graph,
# opset_import, metadata_props, training_info or functions (protobuf tags).
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA})


def looks_like_onnx(data: bytes) -> bool:
    """Whether ``data`` starts like an ONNX model (a protobuf ModelProto)."""
    return len(data) > 3 and data[0] == 0x08 and 0 < data[1] < 0x80 and data[2] in _ONNX_NEXT_TAGS


def read_model(path: str | Path) -> bytes:
    """The bytes of a model file: a regular file under ``MAX_MODEL_BYTES``, never a FIFO or
    device (those are refused from ``stat``, before anything could block or stream)."""
    from data.images import read_bytes  # the one bounded, non-blocking file reader

    check_model_path(path)
    try:
        return read_bytes(path, what="model file", limit=MAX_MODEL_BYTES)
    except UserError as err:  # unreadable (permissions), or swapped for a FIFO meanwhile
        raise UserError(f"{err}; {_HINT}") from None


def check_model_path(path: str | Path) -> None:
    """Refuse a model path that is missing, a folder, a FIFO or device, or over the size
    limit, from ``stat`` alone (CLIs call it before they derive names from the path)."""
    info = stat_path(path, "model file", _HINT)
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"model path {path} is a directory; {_HINT}")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"model path {path} is not a regular file (a FIFO, socket or device); "
                        f"{_HINT}")
    if info.st_size > MAX_MODEL_BYTES:
        raise UserError(
            f"model file {path} is {info.st_size / 2**30:.1f} GiB, over the "
            f"{MAX_MODEL_BYTES / 2**30:.0f} GiB limit (edgeloc models are a few MB and one "
            "ONNX protobuf cannot pass 2 GiB); pass the exported .tflite or .onnx model"
        )


def sniff_format(path: str | Path) -> tuple[str, bytes]:
    """Check a model file and tell its format from its bytes: ("tflite" | "onnx", data)."""
    path = Path(path)
    data = read_model(path)
    suffix = path.suffix.lower()
    if len(data) < 16:
        raise UserError(
            f"model file {path} is empty or truncated ({len(data)} bytes); re-export it"
        )
    if data[4:8] == b"TFL3" and suffix == ".onnx":
        raise UserError(f"{path} is a TFLite model, not ONNX; rename it "
                        f"{path.with_suffix('.tflite').name}")
    if suffix == ".tflite" and looks_like_onnx(data):
        raise UserError(f"{path} is an ONNX model, not TFLite; rename it "
                        f"{path.with_suffix('.onnx').name}")
    if data[4:8] == b"TFL3":
        try:
            read_tflite_metadata(data)  # walks the header tables: catches most truncations
        except ValueError as err:
            raise UserError(f"{path} is a damaged TFLite model ({err}); re-export it") from None
        return "tflite", data
    if suffix == ".tflite":
        raise UserError(
            f"{path} is not a TFLite model (no 'TFL3' identifier at bytes 4-8); re-export it"
        )
    if suffix == ".onnx" or data[0] == 0x08:  # ONNX ModelProto starts with ir_version (field 1)
        return "onnx", data
    raise UserError(f"{path} is neither a TFLite nor an ONNX model; {_HINT}")


def check_threads(threads: int | None) -> int:
    """The engine thread count: None picks ``default_threads()``; 1..MAX_THREADS else."""
    if threads is None:
        return default_threads()
    try:  # 2.7 or True would silently run on 2 or 1 threads; "abc" or NaN is a traceback
        whole = int(threads) == threads and not isinstance(threads, bool)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole and not (isinstance(threads, str) and threads.strip().isdigit()):
        raise UserError(
            f"threads must be a whole number of CPU threads, got {threads!r}; leave "
            "--threads out for one per core, at most 4"
        )
    threads = int(threads)
    if not 1 <= threads <= MAX_THREADS:
        raise UserError(
            f"threads must be between 1 and {MAX_THREADS}, got {threads}; this machine has "
            f"{os.cpu_count() or 1} cores (leave --threads out for one per core, at most 4)"
        )
    return threads


def verify_digest(path: Path, data: bytes) -> bool:
    """Check the file's embedded digest: True when it matches, False when there is none.

    A damaged file, or one whose contract says it was sealed but whose digest is gone,
    raises ``UserError``: before the engine sees a byte of it.
    """
    if integrity.check(data, str(path)):
        return True
    if integrity.claims_digest(data):
        raise UserError(
            f"{path} is damaged: its contract says it was sealed with a digest but the "
            "digest is missing; re-copy or re-export the model (--no-verify loads it unchecked)"
        )
    return False


def default_threads() -> int:
    """One thread per CPU core this process may use, at most 4 (a Pi has 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


__all__ = ["MAX_MODEL_BYTES", "MAX_THREADS", "check_model_path", "check_threads",
           "default_threads", "read_model", "sniff_format", "verify_digest"]
