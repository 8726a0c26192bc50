"""Model cost (parameters, multiply-accumulates) and Raspberry Pi latency ESTIMATES.

MACs are counted for the layers that dominate a CNN: convolutions (incl. depthwise and
separable) and dense/fully-connected layers; element-wise ops, pooling and activations
are left out (they are memory-bound and small). Three readers, one per format:
- Keras: walk the layers (nested backbones included) using their output shapes;
- TFLite: the interpreter's op list and tensor shapes (lean: no TensorFlow);
- ONNX: the graph with inferred shapes (needs the ``onnx`` package; skipped without it).

The Pi figures are estimates, not measurements: this model's MACs scaled by published
MobileNetV2 1.0/224 latencies (see docs/benchmarks.md for the sources).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# ---- published reference figures (docs/benchmarks.md cites them) --------------------------
REF_MACS = 300e6  # MobileNetV2 1.0/224: 300M multiply-adds (Sandler et al. 2018, Table 4)
# Raspberry Pi 4, TFLite + XNNPACK, 4 threads, MobileNetV2 1.0/224, milliseconds (low, high).
PI4_REF_MS = {"int8": (17.0, 20.0), "float": (41.0, 46.0)}
# Raspberry Pi 5 vs Pi 4 CPU: "two to three times" (Raspberry Pi's launch announcement).
PI5_SPEEDUP = (2.0, 3.0)


def pi_estimates(macs: int | None, precision: str | None) -> dict[str, list[float] | None]:
    """Estimated [low, high] ms on a Pi 4 and a Pi 5 (4 threads); None without MACs."""
    if not macs:
        return {"pi4": None, "pi5": None}
    if precision == "int8":
        lo, hi = PI4_REF_MS["int8"]
    elif precision == "dynamic":  # int8 weights, float activations: between the two
        lo, hi = PI4_REF_MS["int8"][0], PI4_REF_MS["float"][1]
    else:  # fp32, fp16 (XNNPACK computes fp16 weights in fp32 on the Pi 4) and Keras
        lo, hi = PI4_REF_MS["float"]
    scale = macs / REF_MACS
    pi4 = [round(lo * scale, 3), round(hi * scale, 3)]
    pi5 = [round(pi4[0] / PI5_SPEEDUP[1], 3), round(pi4[1] / PI5_SPEEDUP[0], 3)]
    return {"pi4": pi4, "pi5": pi5}


# ---- Keras --------------------------------------------------------------------------------


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) if d is not None else 1 for d in tensor.shape)


def _keras_layer_macs(layer: Any) -> int:
    name = type(layer).__name__
    if hasattr(layer, "layers") and layer.layers:  # a nested model (the backbone)
        return sum(_keras_layer_macs(sub) for sub in layer.layers)
    try:
        out = _shape(layer.output)
        inp = _shape(layer.input)
    except (AttributeError, ValueError):
        return 0
    spatial = int(np.prod(out[1:-1])) if len(out) > 2 else 1
    if name in ("Conv2D", "Conv1D", "Conv3D"):
        k = int(np.prod(layer.kernel_size))
        return spatial * out[-1] * k * inp[-1] // max(1, getattr(layer, "groups", 1))
    if name == "DepthwiseConv2D":
        return spatial * out[-1] * int(np.prod(layer.kernel_size))
    if name == "SeparableConv2D":
        dm = getattr(layer, "depth_multiplier", 1)
        return (
            spatial * inp[-1] * dm * int(np.prod(layer.kernel_size))
            + spatial * inp[-1] * dm * out[-1]
        )
    if name == "Dense":
        return int(np.prod(inp[1:-1] or (1,))) * inp[-1] * out[-1]
    return 0


def keras_cost(model: Any) -> dict[str, int]:
    """Parameters and MACs of a Keras model (batch size 1)."""
    return {
        "params": int(model.count_params()),
        "macs": sum(_keras_layer_macs(layer) for layer in model.layers),
    }


# ---- TFLite -------------------------------------------------------------------------------


def tflite_cost(interpreter: Any) -> dict[str, int]:
    """Parameters (conv/FC weights + biases) and MACs from a TFLite interpreter's op list."""
    tensors = {
        t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()
    }
    macs = params = 0
    seen: set[int] = set()
    for op in interpreter._get_ops_details():  # noqa: SLF001  (the only op-level API)
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if (
            name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
            or len(ins) < 2
            or not outs
        ):
            continue
        out = tensors.get(outs[0], ())
        w = tensors.get(ins[1], ())
        if not out or not w:
            continue
        if name == "CONV_2D":  # filter (O, kh, kw, I), output (1, H, W, O)
            macs += int(np.prod(out[:-1])) * out[-1] * int(np.prod(w[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C*m)
            macs += int(np.prod(out)) * w[1] * w[2]
        else:  # FULLY_CONNECTED: weights (O, I)
            macs += int(np.prod(out[:-1])) * w[0] * w[1]
        for idx in ins[1:]:
            if idx >= 0 and idx not in seen and idx in tensors:
                seen.add(idx)
                params += int(np.prod(tensors[idx]))
    return {"params": params, "macs": macs}


# ---- ONNX ---------------------------------------------------------------------------------


def onnx_cost(path: str) -> dict[str, int] | None:
    """Parameters and MACs of an ONNX file; None when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: PLC0415  (optional: not part of .[runtime])
        from onnx import numpy_helper, shape_inference
    except ImportError:
        return None
    model = onnx.load(path)
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as err:  # noqa: BLE001  (shape inference is best effort)
        log.info("ONNX shape inference failed: %s", err)
    graph = model.graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    shapes: dict[str, tuple[int, ...]] = dict(inits)
    for vi in [*graph.value_info, *graph.output, *graph.input]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    producer = {out: node for node in graph.node for out in node.output}

    def weight(name: str) -> str:
        """Follow DequantizeLinear/Transpose/Identity back to the stored initializer."""
        for _ in range(4):
            node = producer.get(name)
            if node is None or node.op_type not in (
                "DequantizeLinear",
                "Transpose",
                "Identity",
                "Cast",
            ):
                break
            name = node.input[0]
        return name

    macs = params = 0
    seen: set[str] = set()
    for node in graph.node:
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w_idx = 3 if node.op_type == "QLinearConv" else 1
            w, out = shapes.get(weight(node.input[w_idx])), shapes.get(node.output[0])
            if w and out and len(out) >= 3:  # W (O, I/g, kh, kw), out (N, O, H, W)
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
            weights = [node.input[w_idx]] + (
                [node.input[-1]] if len(node.input) > w_idx + 1 else []
            )
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            b_idx = 3 if node.op_type == "QLinearMatMul" else 1
            w, out = shapes.get(weight(node.input[b_idx])), shapes.get(node.output[0])
            if not w or weight(node.input[b_idx]) not in inits or not out or len(w) != 2:
                continue
            k = (
                w[1]
                if node.op_type == "Gemm"
                and any(a.name == "transB" and a.i for a in node.attribute)
                else w[0]
            )
            macs += int(np.prod(out)) * k
            weights = [node.input[b_idx]] + (
                [node.input[2]] if node.op_type == "Gemm" and len(node.input) > 2 else []
            )
        else:
            continue
        for name in weights:
            stored = weight(name)
            if stored in inits and stored not in seen:
                seen.add(stored)
                params += int(np.prod(inits[stored]))
    del numpy_helper
    return {"params": params, "macs": macs}
