"""Edit a TFLite flatbuffer: add a metadata entry and give the I/O tensors their signature names."""

from __future__ import annotations

from typing import Any

import numpy as np

_IDENTIFIER = b"TFL3"
_ALIGN = 16  # TFLite's own writer aligns constant buffers to 16 bytes


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # older installs: the copy inside TensorFlow
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _aligned_buffer_class(schema: Any) -> type:
    class AlignedBufferT(schema.BufferT):
        """BufferT whose data vector starts on a 16-byte boundary."""

        def Pack(self, builder: Any) -> int:  # noqa: N802 (flatbuffers API name)
            data = None
            if self.data is not None and len(self.data):
                payload = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(payload), _ALIGN)
                builder.head -= len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def edit_tflite(data: bytes, metadata: dict[str, bytes]) -> bytes:
    """Return ``data`` with ``metadata`` entries set (replacing same-named ones) and the
    signature's input/output tensors renamed to their signature names (image, box, score)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any(b.offset for b in model.buffers or []):
        raise ValueError("models over 2 GB (external buffers) are not supported")
    _rename_io(model)
    aligned = _aligned_buffer_class(schema)
    buffers = []
    for b in model.buffers or []:
        nb = aligned()
        nb.data, nb.offset, nb.size = b.data, b.offset, b.size
        buffers.append(nb)
    model.buffers = buffers
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) not in metadata]
    for name, payload in metadata.items():
        buffer = aligned()
        buffer.data = np.frombuffer(payload, np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _rename_io(model: Any) -> None:
    """Name each signature tensor after its signature key (image, box, score) and every other
    tensor ``t<index>``: the converter's scoped names only cost bytes on a device."""
    for sig in model.signatureDefs or []:
        graph = model.subgraphs[sig.subgraphIndex]
        io = {
            item.tensorIndex: _name(item.name)
            for item in list(sig.inputs or []) + list(sig.outputs or [])
        }
        for index, tensor in enumerate(graph.tensors):
            tensor.name = io.get(index, f"t{index}")


def op_names(data: bytes) -> list[str]:
    """Every operator code in the model: builtin names, ``CUSTOM:<name>`` for custom/Flex ops."""
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op == schema.BuiltinOperator.CUSTOM:
            names.append(f"CUSTOM:{_name(code.CustomCode())}")
        else:
            names.append(builtin.get(op, str(op)))
    return names
