"""Export a trained run into the runtime's default model files (``make models``).

    python -m export.make_models [--run runs/cat] [--out DIR] [--name cat]

writes <name>_fp32.tflite, <name>_int8.tflite, <name>_fp32.onnx and <name>_int8.onnx into
the runtime's models folder (``runtime/models``, shipped in the package:
``cat_int8.tflite`` is what ``runtime.webcam`` and ``runtime.infer`` load by default), each
verified against the Keras model, with one table. The CLI lives in ``export._cli``.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_RUN = "runs/cat"  # make models: python -m train --preset cat --out runs/cat
JOBS = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]


def default_dir() -> Path:
    """The runtime's models folder (package data of ``runtime``)."""
    from runtime.models import MODELS_DIR

    return MODELS_DIR


def default_name(run: Path) -> str:
    """The object class of a single-class run (``cat``), else ``model``."""
    try:
        labels = json.loads((run / "config.json").read_text())["model"]["labels"]
        name = str(labels[1]) if len(labels) == 2 else "model"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return "model"  # a damaged config.json: the export itself says what is wrong
    return name if is_stem(name) else "model"  # "../x" would write outside --out


def is_stem(name: str) -> bool:
    """Whether ``name`` can start a file name in the output folder: one plain name, no
    folder parts, not hidden."""
    return bool(name.strip()) and Path(name).name == name and not name.startswith(".") and (
        "\\" not in name
    )


if __name__ == "__main__":
    from export._cli import main_make_models

    raise SystemExit(main_make_models())
