"""TFLite quantization as one small config object applied to a TFLiteConverter."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.options import IO_TYPES
from runtime.errors import UserError

RepresentativeData = Callable[[], Iterable[list[np.ndarray]]]


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a TFLite model.

    Attributes:
        precision: ``fp32``, ``fp16`` (float16 weights), ``dynamic`` (int8 weights, float
            activations) or ``int8`` (full integer: weights and activations).
        representative_data: callable yielding ``[input tensor]`` lists (int8 only).
        io: dtype of the int8 model's input and outputs (``uint8``, ``int8`` or ``float32``).
        per_channel: int8 weight scales per output channel (TFLite's default) or one per
            tensor (smaller file: 12 bytes less per output channel).
    """

    precision: str = "fp32"
    representative_data: RepresentativeData | None = None
    io: str = "uint8"
    per_channel: bool = True

    @classmethod
    def for_float32(cls) -> QuantConfig:
        return cls("fp32")

    @classmethod
    def for_float16(cls) -> QuantConfig:
        return cls("fp16")

    @classmethod
    def for_dynamic(cls) -> QuantConfig:
        return cls("dynamic")

    @classmethod
    def for_int8(
        cls, representative_data: RepresentativeData, io: str = "uint8", per_channel: bool = True
    ) -> QuantConfig:
        if io not in IO_TYPES:
            raise UserError(f"unknown --io {io!r}; valid: {', '.join(IO_TYPES)}")
        return cls("int8", representative_data, io, per_channel)

    def apply(self, converter: Any) -> Any:
        """Set the converter's options for this precision; built-in ops only (no Flex)."""
        import tensorflow as tf

        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if self.precision == "fp32":
            return converter
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.precision == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        elif self.precision == "int8":
            if self.representative_data is None:
                raise ValueError("int8 quantization needs representative data")
            converter.representative_dataset = self.representative_data
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.as_dtype(self.io)
            converter.inference_output_type = tf.as_dtype(self.io)
            # No public switch exists; this attribute has been TFLiteConverter's for years.
            converter._experimental_disable_per_channel = not self.per_channel
        return converter


# --quantize values; int8 needs representative data, so its entry is filled in by the exporter.
TFLITE_QUANTIZE = ("none", "fp16", "dynamic", "int8")
