"""The contract of one exported file, built from the run it came from."""

from __future__ import annotations

from typing import Any

from export._load import LoadedModel
from runtime.contract import Contract
# How the file's own digest is computed: the runtime checks a file whose contract names it,
# so a file whose digest was stripped is refused too.
from runtime.integrity import INTEGRITY

SCORE_MEANING = "softmax probabilities over labels; labels[0] = 'none' (no object)"


def make_contract(
    loaded: LoadedModel,
    *,
    fmt: str,
    precision: str,
    input_dtype: str,
    calibration: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Contract:
    """The contract of one exported file (``extra``: format-specific facts for ``extra``)."""
    spec = loaded.config.get("model", {})
    info = {
        "format": fmt,
        "score_meaning": SCORE_MEANING,
        "outputs": {"box": "box", "score": "score"},
        "backbone": spec.get("backbone"),
        "train_data": loaded.config.get("data", {}).get("source"),
        "source_model": loaded.path.name if loaded.path else None,
        "integrity": INTEGRITY,
        **(extra or {}),
    }
    size = loaded.image_size
    return Contract(
        input_size=(size, size),
        labels=loaded.labels,
        box_format=loaded.box_format,
        input_dtype=input_dtype,
        precision=precision,
        calibration=calibration,
        source_sha256=loaded.sha256,
        extra=info,
    )
