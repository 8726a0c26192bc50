"""The default models, shipped inside the package (package data), found from any folder.

``cat_int8.tflite`` is what ``runtime.infer`` and ``runtime.webcam`` load without
``--model``; ``cat_fp32.tflite``, ``cat_int8.onnx`` and ``cat_fp32.onnx`` are its twins.
All four are exports of the ``cat`` preset run, reproduced by ``make models``
(``python -m export.make_models``).
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "cat_int8.tflite"

__all__ = ["DEFAULT_MODEL", "MODELS_DIR"]
