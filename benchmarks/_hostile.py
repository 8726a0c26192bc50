"""Hostile but well-formed inputs for the abuse script and the reliability tests.

Tiny ONNX models built with ``onnx.helper`` (each carrying an edgeloc contract for a 32x32
uint8 input): one that answers NaN, one that fails at run time, one whose metadata is not
UTF-8; a TFLite model whose tensor allocation fails; and image files that lie about their
size or end early.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from benchmarks._sealed import reseal
from runtime.contract import CONTRACT_KEY, Contract
from runtime.integrity import digest_of

SIZE = 32


def _model(path: Path, box_nodes: list, extra_inits: list, metadata: dict[str, str]) -> Path:
    """image (1, 32, 32, 3) uint8 -> box (1, 4), score (1, 2) float; ``box_nodes`` make "box"."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, values: list, dtype: int = TensorProto.FLOAT) -> onnx.TensorProto:
        array = np.array(values)
        return helper.make_tensor(name, dtype, array.shape, array.reshape(-1).tolist())

    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),  # depends on the input
        *box_nodes,
        helper.make_node("Add", ["score_bias", "nothing"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, SIZE, SIZE, 3])],
        [
            helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 2]),
        ],
        [const("zero", 0.0), const("score_bias", [[0.1, 0.9]]), *extra_inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = Contract(input_size=(SIZE, SIZE), labels=["none", "cat"]).to_json()
    for key, value in {CONTRACT_KEY: contract, **metadata}.items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


def nan_model(path: Path) -> Path:
    """A model whose box is NaN for every image (a broken export, a bad float cast)."""
    from onnx import TensorProto, helper

    nan = helper.make_tensor("nan_box", TensorProto.FLOAT, [1, 4], [float("nan")] * 4)
    box = [helper.make_node("Add", ["nan_box", "nothing"], ["box"])]
    return _model(Path(path), box, [nan], {})


def failing_model(path: Path) -> Path:
    """A model that loads but fails at run time: a Reshape to a size the pixels decide."""
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("seven", TensorProto.INT64, [1], [7]),
        helper.make_tensor("rest", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("box_bias", TensorProto.FLOAT, [1, 4], [0.1, 0.2, 0.6, 0.9]),
    ]
    box = [
        helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),  # () uint8
        helper.make_node("Cast", ["peak"], ["peak64"], to=TensorProto.INT64),
        helper.make_node("Add", ["peak64", "seven"], ["rows"]),  # (1,): 3072 / (max + 7)
        helper.make_node("Concat", ["rows", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["gone"]),
        helper.make_node("Add", ["box_bias", "gone"], ["box"]),
    ]
    return _model(Path(path), box, inits, {})


def bad_metadata_model(path: Path) -> Path:
    """A model with a metadata value that is not UTF-8 (bytes patched after serializing)."""
    from onnx import TensorProto, helper

    inits = [helper.make_tensor("box_bias", TensorProto.FLOAT, [1, 4], [0.1, 0.2, 0.6, 0.9])]
    box = [helper.make_node("Add", ["box_bias", "nothing"], ["box"])]
    _model(Path(path), box, inits, {"note": "MARKER-MARKER"})
    data = Path(path).read_bytes()
    Path(path).write_bytes(data.replace(b"MARKER-MARKER", b"\xff\xfe\xfd" + b"M" * 10))
    return Path(path)


def alloc_failure_model(src: Path, path: Path) -> Path:
    """``src`` (a TFLite model) with one activation tensor declared 60000x60000x64: it
    parses, and tensor allocation then fails (a raw RuntimeError in the engine)."""
    import flatbuffers

    from export._flatbuffer import _schema

    schema = _schema()
    data = Path(src).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    for i, tensor in enumerate(graph.tensors):
        buffer = model.buffers[tensor.buffer]
        constant = buffer.data is not None and len(buffer.data)
        if tensor.shape is not None and len(tensor.shape) == 4 and not constant \
                and i not in list(graph.inputs):
            tensor.shape = np.array([1, 60000, 60000, 64], np.int32)
            break
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    if digest_of(data) is not None:  # an edgeloc export: keep its seal valid so the engine sees it
        data = reseal(data)
    Path(path).write_bytes(data)
    return Path(path)


def png_claiming(path: Path, width: int, height: int, real: bool = False) -> Path:
    """A grey PNG whose header declares ``width`` x ``height``.

    ``real=False`` stores a few bytes of image data only (the header alone must stop a
    reader); ``real=True`` stores the full zlib stream of zero rows, so an unbounded decoder
    really allocates width x height bytes (30000 x 30000: 900 MB raw from a ~0.9 MB file).
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    if real:
        packer, parts, row = zlib.compressobj(9), [], b"\x00" * (width + 1)
        block = row * max(1, (1 << 22) // len(row))
        rows_per_block = len(block) // len(row)
        for start in range(0, height, rows_per_block):
            count = min(rows_per_block, height - start)
            parts.append(packer.compress(block if count == rows_per_block else row * count))
        idat = b"".join(parts) + packer.flush()
    else:
        idat = zlib.compress(b"\x00" * (width + 1))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return Path(path)


def truncated_jpeg(path: Path, size: tuple[int, int] = (240, 320)) -> Path:
    """The first half of a valid JPEG (the decoder would fill the rest with grey)."""
    import cv2

    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels)
    assert ok
    Path(path).write_bytes(data.tobytes()[: len(data) // 2])
    return Path(path)


__all__ = [
    "alloc_failure_model",
    "bad_metadata_model",
    "failing_model",
    "nan_model",
    "png_claiming",
    "truncated_jpeg",
]
