"""Export a Keras localizer to ONNX: fp32 via tf2onnx, int8 as static QDQ via onnxruntime.

The float graph takes uint8 RGB pixels (the contract's input) and returns ``box`` and
``score``. int8 runs ``quant_pre_process`` then ``quantize_static`` (QDQ, uint8 activations,
int8 weights with 7-bit range: U8S8) calibrated on the shared calibration set. The contract
goes into ``metadata_props``.

Why U8S8 with reduced range rather than ONNX Runtime's usual S8S8: with int8 activations
ONNX Runtime builds different integer graphs on x86 (it converts them to uint8 and leaves
some ops in float) and on ARM (everything fused), so the same file gives different boxes;
and ARM CPUs without dot-product instructions (Raspberry Pi 4, Cortex-A72) overflow a 16-bit
accumulator when two activations both sit at -128 (the attention head's MatMul), moving
boxes by up to half their size. uint8 activations give one graph everywhere and cannot hit
that case; 7-bit weights keep x86 CPUs without VNNI from saturating. Checked under
emulation (benchmarks/arm64_check.py): identical outputs on x86, Pi 4 and Pi 5 CPUs.

    python -m export.onnx --model runs/demo --quantize int8 --method minmax
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from export._graph import native_output_captured, quiet_tensorflow, tf_function
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
from runtime.contract import BOX_OUTPUT, CONTRACT_KEY, INPUT_NAME, SCORE_OUTPUT

log = logging.getLogger(__name__)

ONNX_QUANTIZE = ("none", "int8")
ACTIVATIONS = ("uint8", "int8")  # int8 activations: not reproducible across CPUs (see above)
METHODS = ("minmax", "entropy", "percentile")  # onnxruntime CalibrationMethod names
DEFAULT_OPSET = 17


def calibration_reader(calib: CalibrationSet, input_name: str, dtype: str) -> Any:
    """The ONNX Runtime wrapper over the calibration set: a CalibrationDataReader."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = calib.batches(dtype)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._batches = calib.batches(dtype)

    return Reader()


def convert_float(model: Any, size: int, input_dtype: str, opset: int) -> Any:
    """Keras model -> float ONNX ModelProto with input ``image`` and outputs ``box``, ``score``."""
    quiet_tensorflow()
    import tf2onnx

    fn = tf_function(model, size, input_dtype)
    try:
        with native_output_captured():
            proto, _ = tf2onnx.convert.from_function(
                fn, input_signature=fn.input_signature, opset=opset
            )
    except Exception as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise UserError(
            f"tf2onnx could not convert the model at opset {opset} ({first}); try another --opset"
        ) from None
    names = [o.name for o in proto.graph.output]
    if (
        sorted(names) != sorted([BOX_OUTPUT, SCORE_OUTPUT])
        or proto.graph.input[0].name != INPUT_NAME
    ):
        raise RuntimeError(f"tf2onnx named the tensors {proto.graph.input[0].name} -> {names}")
    return proto


def quantize_int8(
    float_path: Path,
    out_path: Path,
    calib: CalibrationSet,
    input_dtype: str,
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool = True,
    activations: str = "uint8",
) -> None:
    """Static QDQ int8 (U8S8, or S8S8 with ``activations="int8"``) of a float ONNX file,
    after onnxruntime's pre-processing."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    try:
        quant_pre_process(str(float_path), str(pre))
    except Exception as err:  # symbolic shape inference trips on some graphs: quantize as is
        log.warning("quant_pre_process failed (%s); quantizing without it", err)
        pre = float_path
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    with native_output_captured():
        quantize_static(
            str(pre),
            str(out_path),
            calibration_reader(calib, INPUT_NAME, input_dtype),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,  # 7-bit weights: no int8 overflow on x86 without VNNI
            calibrate_method=calibrate,
        )


def set_metadata(proto: Any, values: dict[str, str]) -> None:
    """Set ``metadata_props`` entries, replacing same-named ones."""
    keep = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(
    model: Any,
    out: str | Path | None = None,
    *,
    quantize: str = "none",
    calib: str | None = None,
    calib_dir: str | Path | None = None,
    calib_size: int | None = None,
    calib_screen: float = DEFAULT_SCREEN,
    method: str = "minmax",
    per_channel: bool | None = None,
    reduce_range: bool = True,
    activations: str = "uint8",
    opset: int | None = None,
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
    """Export ``model`` (run dir, .keras file or keras.Model) to a verified .onnx file.

    Args:
        quantize: ``none`` (fp32) or ``int8`` (static QDQ, U8S8 by default).
        method: calibration method for int8: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: int8 weight scales per output channel (True) or per tensor (False);
            None: per tensor (smallest file), per channel if that fails verification.
        reduce_range: 7-bit weights (default), so x86 CPUs without VNNI, where 8-bit
            products can saturate, give the same boxes as every other CPU.
        activations: ``uint8`` (default: the same integer graph on x86 and ARM) or ``int8``
            (ONNX Runtime's usual S8S8; boxes then differ between x86 and ARM CPUs).
        opset: ONNX opset (default 17).
        io: input dtype: ``uint8`` raw pixels (default), ``int8`` pixel - 128, ``float32``.
        Other arguments as for ``export.tflite.export_tflite``.
    """
    t0 = time.perf_counter()
    precision = PRECISIONS[check_choice(quantize, ONNX_QUANTIZE, "ONNX --quantize")]
    check_choice(method, METHODS, "calibration --method")
    check_choice(io, IO_TYPES, "--io")
    check_choice(activations, ACTIVATIONS, "--activations")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 13 <= opset <= 21:
        raise UserError(f"--opset {opset} is out of range; use 13..21 (default {DEFAULT_OPSET})")
    loaded = load_model(model)
    out = Path(out).expanduser() if out else default_out(loaded, "onnx", precision)
    check_writable(out)
    if precision == "int8" and calibration is None:
        calibration = calibration_for(
            loaded, calib, size=calib_size, data_dir=calib_dir, seed=seed, screen=calib_screen
        )
    if verify and holdout is None:
        from export.verify import holdout_set

        holdout = holdout_set(loaded, verify_data, data_dir=verify_dir, size=verify_size, seed=seed)

    import onnx
    import onnxruntime
    import tf2onnx

    float_proto = convert_float(loaded.model, loaded.image_size, io, opset)

    def build(channelwise: bool) -> tuple[bytes, ExportResult]:
        proto, calib_info = float_proto, None
        if precision == "int8":
            with tempfile.TemporaryDirectory(prefix="edgeloc-onnx-") as tmp:
                float_path, q_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
                onnx.save(float_proto, str(float_path))
                quantize_int8(
                    float_path,
                    q_path,
                    calibration,
                    io,
                    method=method,
                    per_channel=channelwise,
                    reduce_range=reduce_range,
                    activations=activations,
                )
                proto = onnx.load(str(q_path))
            calib_info = {
                **calibration.info,
                "method": method,
                "per_channel": channelwise,
                "reduce_range": reduce_range,
                "activations": activations,
            }
        shorten_names(proto)
        contract = make_contract(
            loaded,
            fmt="onnx",
            precision=precision,
            input_dtype=io,
            calibration=calib_info,
            extra={
                "output_dtype": "float32",
                "opset": opset,
                "quant_format": (
                    ("QDQ U8S8" if activations == "uint8" else "QDQ S8S8")
                    if precision == "int8"
                    else None
                ),
                "exporter": "edgeloc",
                "tf2onnx": tf2onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        )
        set_metadata(proto, {CONTRACT_KEY: contract.to_json()})
        proto.producer_name = "edgeloc"
        data = proto.SerializeToString()
        return data, ExportResult(out, "onnx", precision, len(data), contract)

    return write_first_verified(
        build,
        per_channel=per_channel,
        precision=precision,
        out=out,
        holdout=holdout if verify else None,
        max_iou_drop=max_iou_drop,
        t0=t0,
    )


def shorten_names(proto: Any) -> None:
    """Rename every node and inner tensor to a short id (the converters' scoped names can be a
    fifth of a small int8 file); the graph's input and outputs keep their contract names."""
    graph = proto.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        if name not in names:
            names[name] = f"t{len(names)}"
        return names[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags and run one ONNX export."""
    from export._cli import add_common_args, add_onnx_args, onnx_options, parser, run_cli

    ap = parser("python -m export.onnx", "Export a Keras localizer to a verified ONNX model.")
    ap.add_argument("--quantize", default="none", help="none | int8 (default none)")
    ap.add_argument(
        "--io", default="uint8", help="input dtype: uint8 (raw pixels, default), int8, float32"
    )
    add_onnx_args(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    return run_cli(
        args,
        [("onnx", args.quantize)],
        io=args.io,
        per_channel=args.per_channel,
        **onnx_options(args),
    )


if __name__ == "__main__":
    raise SystemExit(main())
