"""The options of an export, one small typed object per concern.

``CalibrationOptions`` (int8 calibration data), ``VerifyOptions`` (the held-out comparison
with Keras) and ``OnnxOptions`` (ONNX conversion and int8 quantization) travel as objects
from the CLI to the exporters; TFLite quantization is ``export.quant.QuantConfig``. Each
checks its values when it is made, so a bad flag fails before the (slow) model load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import UserError

# --quantize value -> precision name written into the contract and file names.
PRECISIONS = {"none": "fp32", "fp32": "fp32", "fp16": "fp16", "dynamic": "dynamic", "int8": "int8"}
# Input dtypes: uint8 raw pixels, int8 pixel - 128, float32 pixels 0..255.
IO_TYPES = ("uint8", "int8", "float32")

DEFAULT_CALIB_SIZE = 200
DEFAULT_SCREEN = 8.0  # drop calibration images whose activations peak this many times the median
DEFAULT_VERIFY_SIZE = 200
DEFAULT_MAX_IOU_DROP = 0.02
# Calibration and held-out images are held in memory, preprocessed (10000 at 300 px: 2.7 GB);
# a synthetic source makes as many as asked, so a typo'd size would exhaust memory.
MAX_SAMPLES = 10_000

ONNX_QUANTIZE = ("none", "int8")
# onnxruntime CalibrationMethod names
METHODS = ("minmax", "entropy", "percentile")
# int8 activations: not reproducible across CPUs (see export.onnx)
ACTIVATIONS = ("uint8", "int8")
DEFAULT_OPSET = 17
OPSETS = range(13, 22)


def check_choice(value: str, valid: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``valid``; else a UserError listing them."""
    valid = list(valid)
    if value not in valid:
        raise UserError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def precision_of(quantize: str, valid: Iterable[str], what: str = "--quantize") -> str:
    """The precision name (fp32, fp16, dynamic, int8) of a ``--quantize`` value."""
    return PRECISIONS[check_choice(quantize, valid, what)]


def check_size(size: int, flag: str) -> int:
    """A number of calibration or held-out images: 1..MAX_SAMPLES."""
    if size < 1:
        raise UserError(f"{flag} must be at least 1, got {size}")
    if size > MAX_SAMPLES:
        raise UserError(f"{flag} must be at most {MAX_SAMPLES} (the images are held in memory), "
                        f"got {size}")
    return size


# Flags naming a path or a source: an empty value (an unset shell variable) would mean the
# current folder (--out-dir "" wrote there, --calib "" calibrated on its pictures).
_PATH_FLAGS = ("model", "run", "out", "out_dir", "calib", "calib_dir", "verify_data",
               "verify_dir", "name")


def check_not_empty(args: Any) -> None:
    """UserError for a path or source flag (of parsed arguments) given as an empty string."""
    for name in _PATH_FLAGS:
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} is empty (an unset shell variable?); pass a value or "
                            "leave the flag out")


@dataclass(frozen=True)
class CalibrationOptions:
    """Where the int8 calibration images come from.

    Attributes:
        source: a data source name (cat-on-scenes, csv, voc, ...) or a folder of images;
            None: the run's training data.
        data_dir: data folder or file of a file source (csv, voc, ...).
        size: images drawn, shuffled; None: ``DEFAULT_CALIB_SIZE`` or all of a smaller source.
        screen: leave out images whose activations peak this many times above the median
            (at most 5% of the set; 0 keeps all; see ``export.calib.screen``).
        seed: seed of the shuffled draw.
    """

    source: str | None = None
    data_dir: str | Path | None = None
    size: int | None = None
    screen: float = DEFAULT_SCREEN
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size is not None:
            check_size(self.size, "--calib-size")


@dataclass(frozen=True)
class VerifyOptions:
    """The comparison of an exported file with its Keras model on held-out images.

    Attributes:
        source: held-out data source; None: the test split of the run's training data.
        data_dir: data folder or file for ``source``.
        size: held-out images.
        max_iou_drop: the export fails (and writes nothing) when its mean IoU is more than
            this below the Keras model's.
        seed: seed of the shuffled draw.
    """

    source: str | None = None
    data_dir: str | Path | None = None
    size: int = DEFAULT_VERIFY_SIZE
    max_iou_drop: float = DEFAULT_MAX_IOU_DROP
    seed: int = 0

    def __post_init__(self) -> None:
        check_size(self.size, "--verify-size")


@dataclass(frozen=True)
class OnnxOptions:
    """ONNX conversion and int8 quantization (the ONNX counterpart of ``QuantConfig``).

    Attributes:
        opset: ONNX opset of the float graph (13..21).
        method: int8 calibration, an onnxruntime CalibrationMethod: minmax, entropy,
            percentile.
        activations: ``uint8`` (default: the same integer graph on x86 and ARM) or ``int8``
            (ONNX Runtime's usual S8S8; boxes then differ between x86 and ARM CPUs).
        reduce_range: 7-bit weights, so x86 CPUs without VNNI, where 8-bit products can
            saturate, give the same boxes as every other CPU.
    """

    opset: int = DEFAULT_OPSET
    method: str = "minmax"
    activations: str = "uint8"
    reduce_range: bool = True

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "calibration --method")
        check_choice(self.activations, ACTIVATIONS, "--activations")
        if int(self.opset) not in OPSETS:
            raise UserError(
                f"--opset {self.opset} is out of range; use {OPSETS[0]}..{OPSETS[-1]} "
                f"(default {DEFAULT_OPSET})"
            )

    @property
    def quant_format(self) -> str:
        """How the contract names the int8 graph."""
        return "QDQ U8S8" if self.activations == "uint8" else "QDQ S8S8"


__all__ = [
    "CalibrationOptions",
    "IO_TYPES",
    "OnnxOptions",
    "PRECISIONS",
    "VerifyOptions",
    "check_choice",
    "check_not_empty",
    "check_size",
]
