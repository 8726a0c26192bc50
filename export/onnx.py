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
emulation (tools/pi/arm64_check.py): identical outputs on x86, Pi 4 and Pi 5 CPUs.

    python -m export.onnx --model runs/demo --quantize int8 --method minmax
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from export import _output
from export._contract import make_contract
from export._graph import quiet_tensorflow, tf_function
from export._load import load_model
from export.calib import CalibrationSet, calibration_for
from export.options import (
    IO_TYPES,
    ONNX_QUANTIZE,
    CalibrationOptions,
    OnnxOptions,
    VerifyOptions,
    check_choice,
    precision_of,
)
from export.verify import ExportResult, Holdout, holdout_set, write_first_verified
from runtime import integrity
from runtime.atomic import scratch_dir
from runtime.contract import BOX_OUTPUT, CONTRACT_KEY, INPUT_NAME, SCORE_OUTPUT
from runtime.errors import UserError
from runtime.quiet import native_output_captured

log = logging.getLogger(__name__)


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
    options: OnnxOptions,
    per_channel: bool,
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
    }[options.method]
    with native_output_captured():
        quantize_static(
            str(pre),
            str(out_path),
            calibration_reader(calib, INPUT_NAME, input_dtype),
            quant_format=QuantFormat.QDQ,
            activation_type=(
                QuantType.QUInt8 if options.activations == "uint8" else QuantType.QInt8
            ),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=options.reduce_range,  # 7-bit weights: no overflow on x86 without VNNI
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
    io: str = "uint8",
    per_channel: bool | None = None,
    calib: CalibrationOptions | CalibrationSet = CalibrationOptions(),
    verify: VerifyOptions | Holdout | None = VerifyOptions(),
    onnx: OnnxOptions = OnnxOptions(),
) -> ExportResult:
    """Export ``model`` (run dir, .keras file or keras.Model) to a verified .onnx file.

    Args:
        quantize: ``none`` (fp32) or ``int8`` (static QDQ, U8S8 by default).
        onnx: opset and int8 quantization (calibration method, activation type, 7-bit
            weights).
        Other arguments as for ``export.tflite.export_tflite``.
    """
    t0 = time.perf_counter()
    precision = precision_of(quantize, ONNX_QUANTIZE, "ONNX --quantize")
    check_choice(io, IO_TYPES, "--io")
    loaded = load_model(model)
    out = _output.target(loaded, out, "onnx", precision)
    calibration = calibration_for(loaded, calib) if precision == "int8" else None
    holdout = holdout_set(loaded, verify)
    _output.check_data(out, calibration, holdout)

    import onnx as onnx_lib
    import onnxruntime
    import tf2onnx

    float_proto = convert_float(loaded.model, loaded.image_size, io, int(onnx.opset))

    def build(channelwise: bool) -> tuple[bytes, ExportResult]:
        proto, calib_info = float_proto, None
        if calibration is not None:
            with scratch_dir("onnx") as tmp:
                float_path, q_path = tmp / "float.onnx", tmp / "int8.onnx"
                onnx_lib.save(float_proto, str(float_path))
                quantize_int8(float_path, q_path, calibration, io, onnx, channelwise)
                proto = onnx_lib.load(str(q_path))
            calib_info = {
                **calibration.info,
                "method": onnx.method,
                "per_channel": channelwise,
                "reduce_range": onnx.reduce_range,
                "activations": onnx.activations,
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
                "opset": int(onnx.opset),
                "quant_format": onnx.quant_format if calibration is not None else None,
                "exporter": "edgeloc",
                "tf2onnx": tf2onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        )
        data = embed(proto, contract)
        return data, ExportResult(out, "onnx", precision, len(data), contract)

    return write_first_verified(
        build,
        per_channel=per_channel,
        precision=precision,
        out=out,
        holdout=holdout,
        t0=t0,
    )


def embed(proto: Any, contract: Any) -> bytes:
    """Serialize ``proto`` with the contract and a digest placeholder in ``metadata_props``,
    then seal the bytes with their own SHA-256 (``runtime.integrity``), the last change."""
    set_metadata(
        proto, {CONTRACT_KEY: contract.to_json(), integrity.DIGEST_KEY: integrity.placeholder()}
    )
    proto.producer_name = "edgeloc"
    return integrity.seal(proto.SerializeToString())


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


if __name__ == "__main__":
    from export._cli import main_onnx

    raise SystemExit(main_onnx())
