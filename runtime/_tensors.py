"""Tensor values at the engine boundary: what a model's input takes and its outputs give.

uint8 pixels go in through the input tensor's dtype and quantization; outputs come back as
float32. Both conversions run on every frame, so each is set up once per model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import UserError

_INPUT_DTYPES = (np.uint8, np.int8, np.float32)


@dataclass
class TensorInfo:
    """One input or output tensor: name, shape (-1 = dynamic), dtype, (scale, zero point)."""

    name: str
    shape: tuple
    dtype: np.dtype
    quant: tuple[float, int] = (0.0, 0)
    index: Any = None  # engine handle: TFLite tensor index or ONNX name


class InputConverter:
    """uint8 pixels -> input tensor values via the tensor's quantization, into a reused buffer."""

    def __init__(self, info: TensorInfo):
        self.dtype = np.dtype(info.dtype)
        scale, zero = info.quant
        if self.dtype not in [np.dtype(d) for d in _INPUT_DTYPES]:
            raise UserError(
                f"model input {info.name!r} has dtype {self.dtype}; edgeloc models take "
                "uint8, int8 or float32 pixels: re-export the model with edgeloc's exporter"
            )
        if self.dtype == np.uint8:
            self.mode = "same" if (scale, zero) in ((0.0, 0), (1.0, 0)) else "quant"
        elif self.dtype == np.int8:  # the contract's int8 input is pixel - 128
            self.mode = "xor" if (scale, zero) in ((0.0, 0), (1.0, -128)) else "quant"
        else:
            self.mode = "float"
        self.scale, self.zero = float(scale), int(zero)
        if self.mode == "quant":
            _check_pixel_range(info, self.scale, self.zero)
        self._buf: np.ndarray | None = None

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.mode == "same":
            return pixels
        if self._buf is None or self._buf.shape != pixels.shape:
            self._buf = np.empty(pixels.shape, self.dtype)
        if self.mode == "float":
            np.copyto(self._buf, pixels, casting="unsafe")
        elif self.mode == "xor":  # uint8 p ^ 0x80 reinterpreted as int8 == p - 128
            np.bitwise_xor(pixels, 0x80, out=self._buf.view(np.uint8))
        else:
            info = np.iinfo(self.dtype)
            q = np.rint(pixels.astype(np.float32) / self.scale + self.zero)
            np.copyto(self._buf, np.clip(q, info.min, info.max), casting="unsafe")
        return self._buf


def _check_pixel_range(info: TensorInfo, scale: float, zero: int) -> None:
    """Refuse a quantized input that cannot hold raw pixels: a model from another tool that
    expects normalized values ([0, 1], [-1, 1]) would see every pixel clipped to its top."""
    limits = np.iinfo(np.dtype(info.dtype))
    top = (limits.max - zero) * scale
    if scale <= 0 or top < 128:  # edgeloc's int8 inputs hold 0..255 (scale 1)
        raise UserError(
            f"model input {info.name!r} is quantized for values up to {top:.3g} (scale "
            f"{scale:.4g}, zero point {zero}), but edgeloc feeds raw pixels 0..255: the model "
            "expects normalized input; re-export it with edgeloc's exporter (raw pixels in)"
        )


def dequantize(values: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
    """Quantized outputs -> float32, in place on one new array."""
    scale, zero = quant
    if values.dtype == np.float32:
        return values
    out = values.astype(np.float32)
    if scale:
        if zero:
            out -= zero
        out *= scale
    return out


def dequantizer(info: TensorInfo) -> Callable[[np.ndarray], np.ndarray]:
    """The per-frame float32 conversion of one output. 8-bit outputs go through a 256-entry
    table built with ``dequantize``'s float32 arithmetic (same values, one numpy call)."""
    dtype, quant = np.dtype(info.dtype), info.quant
    if dtype == np.float32:
        return np.asarray
    if dtype.itemsize == 1 and dtype.kind in "iu":
        table = dequantize(np.arange(256, dtype=np.uint8).view(dtype), quant)
        return lambda values: table.take(values.view(np.uint8))
    return lambda values: dequantize(values, quant)
