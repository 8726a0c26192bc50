"""Model file integrity: a SHA-256 digest of the file's own bytes, embedded in the file.

The exporter writes the metadata entry ``edgeloc_digest`` with a placeholder value
(``sha256:`` and 64 zeros), serializes the model, hashes the whole file as it is then and
writes the hex digest over the placeholder (``seal``): the same length, so no offset in the
flatbuffer or protobuf moves. To check a file, the digest is swapped back for the
placeholder and the bytes hashed again (``check``). One digest rule for TFLite and ONNX,
no format parser needed: the marker ``sha256:`` + 64 hex digits occurs once in a sealed file.
A file whose contract says it was sealed (``integrity`` in the contract) but that carries
no digest any more is damaged too; the runtime checks that (``runtime.localizer``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from runtime.errors import UserError

DIGEST_KEY = "edgeloc_digest"
INTEGRITY = "sha256"  # the contract's ``extra["integrity"]`` in a file sealed by edgeloc
PREFIX = b"edgeloc-sha256:"  # the marker before the 64 hex digits of the digest
PLACEHOLDER = PREFIX + b"0" * 64  # the metadata value an exporter embeds before sealing
CLAIM = f'"integrity": "{INTEGRITY}"'.encode()  # the contract's promise, as the JSON holds it
_PATTERN = re.compile(re.escape(PREFIX) + rb"[0-9a-f]{64}")


def placeholder() -> str:
    """The metadata value to embed under ``DIGEST_KEY`` before ``seal``."""
    return PLACEHOLDER.decode()


def seal(data: bytes) -> bytes:
    """Fill the one placeholder in ``data`` with the SHA-256 of ``data`` (placeholder in place)."""
    if data.count(PLACEHOLDER) != 1:
        raise ValueError(f"the model bytes hold {data.count(PLACEHOLDER)} digest placeholders, need 1")
    digest = hashlib.sha256(data).hexdigest().encode()
    return data.replace(PLACEHOLDER, PREFIX + digest)


def digest_of(data: bytes) -> tuple[str, str] | None:
    """(embedded digest, digest of the bytes) of a sealed file; None when it carries none.

    A marker without 64 hex digits after it (a damaged digest) gives ("", actual), which
    never matches.
    """
    start = data.find(PREFIX)
    if start < 0:
        return None
    match = _PATTERN.match(data, start)
    if match is None or data.find(PREFIX, start + 1) >= 0:
        return "", hashlib.sha256(data).hexdigest()
    embedded = match.group(0)[len(PREFIX):].decode()
    view = memoryview(data)  # hash around the digest without copying the file
    hasher = hashlib.sha256(view[: match.start()])
    hasher.update(PLACEHOLDER)
    hasher.update(view[match.end():])
    return embedded, hasher.hexdigest()


def check(data: bytes, name: str) -> bool:
    """True when ``data`` carries a digest that matches; False when it carries none.

    Raises ``UserError`` naming the file when the digest does not match (a damaged file).
    """
    found = digest_of(data)
    if found is None:
        return False
    embedded, actual = found
    if embedded != actual:
        raise UserError(
            f"{name} is damaged: its content does not match the digest it was exported with "
            f"(sha256 {actual[:12]}... vs {embedded[:12]}...); re-copy or re-export the model "
            "(--no-verify loads it unchecked)"
        )
    return True


def claims_digest(data: bytes) -> bool:
    """Whether the contract inside ``data`` says the file was sealed, read from the raw bytes.

    The contract is JSON stored as is in both formats, so this needs no parser and runs
    before the bytes reach an engine: a sealed file whose digest was destroyed is refused
    before a damaged flatbuffer or protobuf is interpreted.
    """
    return CLAIM in data


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (a run's model and resume files, the
    model an export starts from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["CLAIM", "DIGEST_KEY", "INTEGRITY", "PLACEHOLDER", "PREFIX", "check",
           "claims_digest", "digest_of", "placeholder", "seal", "sha256_file"]
