"""Seal a copy of a model file the way the exporter does, to measure the runtime's check.

Files exported by edgeloc are sealed already and are copied as they are; for older files
and other tools' files ``sealed_copy`` adds the ``edgeloc_digest`` placeholder and
``"integrity": "sha256"`` in the contract's ``extra`` (a TFLite metadata entry or ONNX
``metadata_props``), then fills the digest with ``runtime.integrity.seal``: the same bytes
an edgeloc export will write.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.contract import CONTRACT_KEY, read_tflite_metadata
from runtime.integrity import (CLAIM, DIGEST_KEY, INTEGRITY, PLACEHOLDER, PREFIX, digest_of,
                               placeholder, seal)

_NO_CLAIM = CLAIM.replace(b'"integrity"', b'"integrit_"')  # same length: no offset moves


def reseal(data: bytes) -> bytes:
    """A sealed file edited after sealing, with its digest recomputed over the new bytes."""
    found = digest_of(data)
    if not found or not found[0]:
        raise ValueError("the model bytes carry no intact digest to recompute")
    return seal(data.replace(PREFIX + found[0].encode(), PLACEHOLDER))


def unclaimed(data: bytes) -> bytes:
    """A sealed file whose contract no longer says so (a same-length rename, resealed)."""
    assert data.count(CLAIM) == 1
    return reseal(data.replace(CLAIM, _NO_CLAIM))


def _sealed_contract(text: bytes | str) -> bytes:
    contract = json.loads(text)
    contract.setdefault("extra", {})["integrity"] = INTEGRITY
    return json.dumps(contract, sort_keys=True).encode()


def unsealed_bytes(data: bytes) -> bytes:
    """A sealed edgeloc export as a file without its seal: no digest, no ``integrity`` claim.

    Same-length byte edits (the metadata entry renamed, the digest overwritten, the
    contract's claim renamed), so the flatbuffer or protobuf stays valid: the file as an
    older edgeloc or another tool would have written it.
    """
    found = digest_of(data)
    if not found or found[0] != found[1]:
        raise ValueError("the model bytes are not an intact sealed edgeloc export")
    digest = PREFIX + found[0].encode()
    for old in (DIGEST_KEY.encode(), digest, CLAIM):
        if data.count(old) != 1:
            raise ValueError(f"the model bytes hold {old[:20]!r} {data.count(old)} times, need 1")
    data = data.replace(DIGEST_KEY.encode(), b"x" * len(DIGEST_KEY))
    data = data.replace(digest, b"x" * len(digest))
    return data.replace(CLAIM, _NO_CLAIM)


def sealed_bytes(data: bytes, fmt: str, *, claim: bool = True) -> bytes:
    """``data`` (a "tflite" or "onnx" model with an edgeloc contract) with a digest embedded.

    ``claim=False`` leaves the contract alone (a digest without the contract's promise).
    A file that already carries a matching digest (an edgeloc export) is returned as is.
    """
    found = digest_of(data)
    if found is not None and found[0] == found[1]:
        return data if claim or CLAIM not in data else unclaimed(data)
    if fmt == "tflite":
        from export._flatbuffer import edit_tflite

        entries = {DIGEST_KEY: placeholder().encode()}
        if claim:
            entries[CONTRACT_KEY] = _sealed_contract(read_tflite_metadata(data)[CONTRACT_KEY])
        return seal(edit_tflite(data, entries))
    import onnx

    proto = onnx.load_from_string(data)
    props = {p.key: p.value for p in proto.metadata_props}
    if claim:
        props[CONTRACT_KEY] = _sealed_contract(props[CONTRACT_KEY]).decode()
    props[DIGEST_KEY] = placeholder()
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    return seal(proto.SerializeToString())


def sealed_copy(src: str | Path, dst: str | Path, *, claim: bool = True) -> Path:
    """Write a sealed copy of the model ``src`` to ``dst``; returns ``dst``."""
    src, dst = Path(src), Path(dst)
    data = src.read_bytes()
    fmt = "tflite" if data[4:8] == b"TFL3" else "onnx"
    dst.write_bytes(sealed_bytes(data, fmt, claim=claim))
    return dst


__all__ = ["reseal", "sealed_bytes", "sealed_copy", "unclaimed", "unsealed_bytes"]
