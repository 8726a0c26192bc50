"""edgeloc export: Keras localizer -> verified TFLite and ONNX models (fp32 to int8).

    from export import export_tflite, CalibrationOptions, VerifyOptions
    export_tflite("runs/demo", quantize="int8", calib=CalibrationOptions(size=300))

Heavy libraries (TensorFlow, tf2onnx, onnx) are imported only when an export runs.
"""

from export.options import CalibrationOptions, OnnxOptions, VerifyOptions
from export.verify import ExportResult, VerificationFailed
from runtime.errors import UserError

__all__ = [
    "CalibrationOptions",
    "ExportResult",
    "OnnxOptions",
    "UserError",
    "VerificationFailed",
    "VerifyOptions",
    "export_onnx",
    "export_tflite",
]


def export_tflite(*args, **kwargs):  # noqa: ANN002, ANN003
    """See ``export.tflite.export_tflite``."""
    from export.tflite import export_tflite as impl

    return impl(*args, **kwargs)


def export_onnx(*args, **kwargs):  # noqa: ANN002, ANN003
    """See ``export.onnx.export_onnx``."""
    from export.onnx import export_onnx as impl

    return impl(*args, **kwargs)
