"""Export a Keras localizer to TFLite: fp32, fp16, dynamic-range or full-integer int8.

Path: Keras serving graph -> SavedModel -> ``TFLiteConverter.from_saved_model`` with
built-in ops only (no Flex), then the contract is written into the flatbuffer's metadata
and the file is verified against the Keras model before it is renamed into place.

    python -m export.tflite --model runs/demo --quantize int8
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from export import _output
from export._contract import make_contract
from export._graph import quiet_tensorflow, write_saved_model
from export._load import load_model
from export.calib import CalibrationSet, calibration_for
from export.options import IO_TYPES, CalibrationOptions, VerifyOptions, check_choice, precision_of
from export.quant import TFLITE_QUANTIZE, QuantConfig
from export.verify import ExportResult, Holdout, holdout_set, write_first_verified
from runtime import integrity
from runtime.atomic import scratch_dir
from runtime.contract import CONTRACT_KEY, read_tflite_metadata
from runtime.errors import UserError
from runtime.quiet import native_output_captured

log = logging.getLogger(__name__)


def representative_dataset(calib: CalibrationSet, dtype: str) -> Any:
    """The TFLite wrapper over the calibration set: a callable yielding ``[tensor]`` lists."""
    return lambda: ([batch] for batch in calib.batches(dtype))


def quant_config(
    precision: str,
    calib: CalibrationSet | None,
    io: str,
    graph_dtype: str | None = None,
    per_channel: bool = False,
) -> QuantConfig:
    """The QuantConfig for a precision name (int8 needs the calibration set)."""
    if precision == "int8":
        if calib is None:
            raise ValueError("int8 quantization needs a calibration set")
        return QuantConfig.for_int8(
            representative_dataset(calib, graph_dtype or io), io=io, per_channel=per_channel
        )
    return {
        "fp32": QuantConfig.for_float32,
        "fp16": QuantConfig.for_float16,
        "dynamic": QuantConfig.for_dynamic,
    }[precision]()


def convert(model: Any, size: int, config: QuantConfig, input_dtype: str) -> bytes:
    """Keras model -> TFLite flatbuffer bytes through a temporary SavedModel."""
    quiet_tensorflow()
    import tensorflow as tf

    with scratch_dir("savedmodel") as tmp:  # a killed export's folder goes on the next run
        folder = write_saved_model(model, size, input_dtype, tmp / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
        config.apply(converter)
        try:
            with native_output_captured():
                return converter.convert()
        except Exception as err:  # ConverterError: usually an op without a built-in kernel
            text = str(err).strip() or type(err).__name__
            hint = ""
            if any(k in text for k in ("Flex", "SELECT_TF_OPS", "not supported", "custom op")):
                hint = (
                    "; the model needs ops outside TFLite's built-in set, which edgeloc does not "
                    "allow (no Flex ops): replace those layers"
                )
            raise UserError(
                f"TFLite conversion failed ({text.splitlines()[0][:300]}){hint}"
            ) from None


def check_builtin_only(data: bytes) -> list[str]:
    """The model's op list; raises if any op is custom or Flex (needs the full TF runtime)."""
    from export._flatbuffer import op_names

    ops = op_names(data)
    bad = [op for op in ops if op.startswith("CUSTOM")]
    if bad:
        raise UserError(
            f"exported model uses non-built-in ops {bad}; these need TensorFlow's "
            "Flex delegate, which edge interpreters lack"
        )
    return ops


# Accepted (scale, zero point) of the input tensor per --io: each maps pixels exactly.
_EXACT_INPUT = {
    "uint8": ((0.0, 0), (1.0, 0)),
    "int8": ((0.0, 0), (1.0, -128)),
    "float32": ((0.0, 0),),
}


def check_input_quantization(data: bytes, io: str) -> None:
    """The input must take contract pixels exactly (uint8 p, int8 p - 128, float p): no rescale."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=data).get_input_details()[0]
    scale, zero = detail["quantization"]
    if (round(float(scale), 6), int(zero)) not in _EXACT_INPUT[io]:
        raise RuntimeError(
            f"converted input has quantization scale {scale}, zero point {zero}; "
            f"the contract's {io} input needs one of {_EXACT_INPUT[io]}"
        )


def export_tflite(
    model: Any,
    out: str | Path | None = None,
    *,
    quantize: str = "none",
    io: str = "uint8",
    per_channel: bool | None = None,
    calib: CalibrationOptions | CalibrationSet = CalibrationOptions(),
    verify: VerifyOptions | Holdout | None = VerifyOptions(),
) -> ExportResult:
    """Export ``model`` (run dir, .keras file or keras.Model) to a verified .tflite file.

    Args:
        out: the file (default RUN/model_<precision>.tflite); never one of the run's files.
        quantize: ``none`` (fp32), ``fp16``, ``dynamic`` or ``int8``.
        io: input dtype (``uint8`` raw pixels, ``int8`` pixel - 128, ``float32``); int8 models
            also use it for their outputs.
        per_channel: int8 weight scales per output channel (True) or per tensor (False);
            None: per tensor (smallest file), per channel if that fails verification.
        calib: int8 calibration data (default: the run's training data), or a prebuilt set
            shared by several exports.
        verify: the comparison with the Keras model on held-out data (a prebuilt ``Holdout``
            to share it; None: no verification). A mean IoU drop over
            ``verify.max_iou_drop`` raises VerificationFailed and leaves no file at ``out``.
    """
    t0 = time.perf_counter()
    precision = precision_of(quantize, TFLITE_QUANTIZE, "TFLite --quantize")
    check_choice(io, IO_TYPES, "--io")
    loaded = load_model(model)
    out = _output.target(loaded, out, "tflite", precision)
    calibration = calibration_for(loaded, calib) if precision == "int8" else None
    holdout = holdout_set(loaded, verify)
    _output.check_data(out, calibration, holdout)
    # int8 models: the converter types a float 0..255 input as uint8 (scale 1, zero point 0)
    # or int8 (pixel - 128) itself, since calibration pins the input range to exactly 0..255;
    # the whole graph is then integer. Float models take io-typed pixels and cast them.
    graph_dtype = "float32" if precision == "int8" else io

    def build(channelwise: bool) -> tuple[bytes, ExportResult]:
        config = quant_config(precision, calibration, io, graph_dtype, per_channel=channelwise)
        data = convert(loaded.model, loaded.image_size, config, graph_dtype)
        check_input_quantization(data, io)
        ops = check_builtin_only(data)
        calib_info = None
        if calibration is not None:
            calib_info = {**calibration.info, "per_channel": channelwise}
        contract = make_contract(
            loaded,
            fmt="tflite",
            precision=precision,
            input_dtype=io,
            calibration=calib_info,
            extra={
                "output_dtype": io if precision == "int8" else "float32",
                "ops": sorted(set(ops)),
                **_versions(),
            },
        )
        data = embed(data, contract)
        return data, ExportResult(out, "tflite", precision, len(data), contract)

    return write_first_verified(
        build,
        per_channel=per_channel,
        precision=precision,
        out=out,
        holdout=holdout,
        t0=t0,
    )


def embed(data: bytes, contract: Any) -> bytes:
    """Write the contract and a digest placeholder into the flatbuffer's metadata, then seal
    the file with its own SHA-256 (``runtime.integrity``): the last change to its bytes."""
    from export._flatbuffer import edit_tflite

    payload = contract.to_json().encode()
    data = edit_tflite(
        data, {CONTRACT_KEY: payload, integrity.DIGEST_KEY: integrity.placeholder().encode()}
    )
    if read_tflite_metadata(data).get(CONTRACT_KEY) != payload:
        raise RuntimeError("the contract did not survive the TFLite metadata edit")
    return integrity.seal(data)


def _versions() -> dict[str, str]:
    import tensorflow as tf

    return {"exporter": "edgeloc", "tensorflow": tf.__version__}


if __name__ == "__main__":
    from export._cli import main_tflite

    raise SystemExit(main_tflite())
