"""Export a Keras localizer to TFLite: fp32, fp16, dynamic-range or full-integer int8.

Path: Keras serving graph -> SavedModel -> ``TFLiteConverter.from_saved_model`` with
built-in ops only (no Flex), then the contract is written into the flatbuffer's metadata
and the file is verified against the Keras model before it is renamed into place.

    python -m export.tflite --model runs/demo --quantize int8
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from export._graph import native_output_captured, quiet_tensorflow, write_saved_model
from export._io import (
    IO_TYPES,
    PRECISIONS,
    UserError,
    ExportResult,
    check_choice,
    check_writable,
    default_out,
    load_model,
    make_contract,
    write_first_verified,
)
from export.calib import DEFAULT_SCREEN, CalibrationSet, calibration_for
from export.quant import TFLITE_QUANTIZE, QuantConfig
from runtime.contract import CONTRACT_KEY, read_tflite_metadata

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
        assert calib is not None
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

    with tempfile.TemporaryDirectory(prefix="edgeloc-savedmodel-") as tmp:
        folder = write_saved_model(model, size, input_dtype, Path(tmp) / "saved_model")
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
    calib: str | None = None,
    calib_dir: str | Path | None = None,
    calib_size: int | None = None,
    calib_screen: float = DEFAULT_SCREEN,
    per_channel: bool | None = None,
    io: str = "uint8",
    verify: bool = True,
    max_iou_drop: float = 0.02,
    verify_data: str | None = None,
    verify_dir: str | Path | None = None,
    verify_size: int = 200,
    seed: int = 0,
    calibration: CalibrationSet | None = None,
    holdout: Any = None,
) -> ExportResult:
    """Export ``model`` (run dir, .keras file or keras.Model) to a verified .tflite file.

    Args:
        quantize: ``none`` (fp32), ``fp16``, ``dynamic`` or ``int8``.
        calib, calib_dir, calib_size: calibration data for int8 (default: the run's training data).
        calib_screen: leave out calibration images whose activations peak this many times
            above the median (0 keeps all; see ``export.calib.screen``).
        per_channel: int8 weight scales per output channel (True) or per tensor (False);
            None: per tensor (smallest file), per channel if that fails verification.
        io: input dtype (``uint8`` raw pixels, ``int8`` pixel - 128, ``float32``); int8 models
            also use it for their outputs.
        verify: compare with the Keras model on held-out data; a mean IoU drop over
            ``max_iou_drop`` raises VerificationFailed and leaves no file at ``out``.
        calibration, holdout: prebuilt sets, to share them between several exports.
    """
    t0 = time.perf_counter()
    precision = PRECISIONS[check_choice(quantize, TFLITE_QUANTIZE, "TFLite --quantize")]
    check_choice(io, IO_TYPES, "--io")
    loaded = load_model(model)
    out = Path(out).expanduser() if out else default_out(loaded, "tflite", precision)
    check_writable(out)
    if precision == "int8" and calibration is None:
        calibration = calibration_for(
            loaded, calib, size=calib_size, data_dir=calib_dir, seed=seed, screen=calib_screen
        )
    if verify and holdout is None:
        from export.verify import holdout_set

        holdout = holdout_set(loaded, verify_data, data_dir=verify_dir, size=verify_size, seed=seed)

    # int8 models: the converter types a float 0..255 input as uint8 (scale 1, zero point 0)
    # or int8 (pixel - 128) itself, since calibration pins the input range to exactly 0..255;
    # the whole graph is then integer. Float models take io-typed pixels and cast them.
    graph_dtype = "float32" if precision == "int8" else io
    from export._flatbuffer import edit_tflite

    def build(channelwise: bool) -> tuple[bytes, ExportResult]:
        config = quant_config(
            precision,
            calibration if precision == "int8" else None,
            io,
            graph_dtype,
            per_channel=channelwise,
        )
        data = convert(loaded.model, loaded.image_size, config, graph_dtype)
        check_input_quantization(data, io)
        ops = check_builtin_only(data)
        calib_info = None
        if precision == "int8":
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
        data = edit_tflite(data, {CONTRACT_KEY: contract.to_json().encode()})
        if read_tflite_metadata(data).get(CONTRACT_KEY) != contract.to_json().encode():
            raise RuntimeError("the contract did not survive the TFLite metadata edit")
        return data, ExportResult(out, "tflite", precision, len(data), contract)

    return write_first_verified(
        build,
        per_channel=per_channel,
        precision=precision,
        out=out,
        holdout=holdout if verify else None,
        max_iou_drop=max_iou_drop,
        t0=t0,
    )


def _versions() -> dict[str, str]:
    import tensorflow as tf

    return {"exporter": "edgeloc", "tensorflow": tf.__version__}


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags and run one TFLite export."""
    from export._cli import add_common_args, parser, run_cli

    ap = parser("python -m export.tflite", "Export a Keras localizer to a verified TFLite model.")
    ap.add_argument(
        "--quantize", default="none", help=f"{' | '.join(TFLITE_QUANTIZE)} (default none)"
    )
    ap.add_argument(
        "--io",
        default="uint8",
        help="input dtype (and int8 model outputs): uint8 (raw pixels, default), int8, float32",
    )
    add_common_args(ap)
    args = ap.parse_args(argv)
    return run_cli(args, [("tflite", args.quantize)], io=args.io, per_channel=args.per_channel)


if __name__ == "__main__":
    raise SystemExit(main())
