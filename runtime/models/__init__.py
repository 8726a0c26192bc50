"""The default models, shipped inside the package (package data), found from any folder.

``cat_int8.tflite`` is what ``runtime.infer`` and ``runtime.webcam`` load without
``--model``; ``face_int8.tflite`` is what ``--model face`` loads. Each has three twins
(``*_fp32.tflite``, ``*_int8.onnx``, ``*_fp32.onnx``). They are exports of the ``cat`` and
``face`` preset runs, reproduced by ``make models`` (``python -m export.make_models``).
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "cat_int8.tflite"
SHIPPED = ("cat", "face")  # --model NAME: MODELS_DIR / NAME_int8.tflite (or .onnx)


def shipped(name: str, fmt: str = "tflite") -> Path:
    """The int8 file of a shipped model (``cat``, ``face``) in ``fmt`` (``tflite``, ``onnx``)."""
    return MODELS_DIR / f"{name}_int8.{fmt}"


__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "SHIPPED", "shipped"]
