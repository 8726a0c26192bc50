"""edgeloc export: Keras localizer -> verified TFLite and ONNX models (fp32 to int8).

Heavy libraries (TensorFlow, tf2onnx, onnx) are imported only when an export runs.
"""

from export._io import ExportResult, VerificationFailed
from runtime.errors import UserError

__all__ = ["UserError", "ExportResult", "VerificationFailed", "export_onnx", "export_tflite"]


def export_tflite(*args, **kwargs):  # noqa: ANN002, ANN003
    """See ``export.tflite.export_tflite``."""
    from export.tflite import export_tflite as impl

    return impl(*args, **kwargs)


def export_onnx(*args, **kwargs):  # noqa: ANN002, ANN003
    """See ``export.onnx.export_onnx``."""
    from export.onnx import export_onnx as impl

    return impl(*args, **kwargs)
