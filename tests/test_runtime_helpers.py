"""Tiny models and media for the runtime tests, built once per session into a shared folder.

The models have a known answer: the heads' kernels are shrunk and their biases set so
every image gives (nearly) the same box and score, which the tests then check in pixels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = 32
LABELS = ("none", "cat")
BOX_XYXY = (0.1, 0.2, 0.6, 0.9)  # what every fixture model answers, normalized
BOX_XYWH = (0.1, 0.2, 0.5, 0.7)  # the same box in xywh for the xywh model
SCORE = (0.12, 0.88)
VIDEO_FRAMES = 24


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _tiny_keras(box_format: str):
    from train.model import ModelSpec, build_model

    spec = ModelSpec(backbone="small_cnn", image_size=SIZE, labels=LABELS, alpha=0.5, head_units=8,
                     box_format=box_format)
    model = build_model(spec)
    box = np.array(BOX_XYXY if box_format == "xyxy" else BOX_XYWH, np.float32)
    for name, bias in (("box", _logit(box)), ("score", np.log(np.array(SCORE, np.float32)))):
        layer = model.get_layer(name)
        kernel, _ = layer.get_weights()
        layer.set_weights([kernel * 1e-3, bias.astype(np.float32)])
    return model


def _contract(input_dtype: str, precision: str, box_format: str = "xyxy") -> str:
    from runtime.contract import Contract

    return Contract(input_size=(SIZE, SIZE), labels=list(LABELS), box_format=box_format,
                    input_dtype=input_dtype, precision=precision).to_json()


def _tflite(saved: Path, quant: str) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quant != "none":
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8 if quant == "uint8" else tf.int8
        conv.inference_output_type = tf.uint8 if quant == "uint8" else tf.int8
    return conv.convert()


def _onnx(model, out: Path, contract: str | None) -> None:
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.uint8, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    if contract is not None:
        from runtime.contract import CONTRACT_KEY

        entry = proto.metadata_props.add()
        entry.key, entry.value = CONTRACT_KEY, contract
    onnx.save(proto, str(out))


def build_models(folder: Path) -> dict[str, Path]:
    """Write the fixture models once (a marker file says they are complete)."""
    names = {
        "f32": "tiny_f32.tflite",  # float I/O, sidecar contract
        "u8": "tiny_u8.tflite",  # int8 weights, uint8 I/O, sidecar contract
        "i8": "tiny_i8.tflite",  # int8 weights, int8 I/O, sidecar contract
        "bare": "bare_u8.tflite",  # uint8 I/O, no contract at all
        "onnx": "tiny.onnx",  # uint8 input, contract in metadata_props
        "onnx_bare": "bare.onnx",  # no contract
        "xywh": "tiny_xywh.onnx",  # xywh box format, contract in metadata_props
    }
    paths = {k: folder / v for k, v in names.items()}
    if (folder / "done").exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = _tiny_keras("xyxy")
    saved = folder / "saved"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    for key, quant, dtype, precision in (("f32", "none", "float32", "fp32"),
                                         ("u8", "uint8", "uint8", "int8"),
                                         ("i8", "int8", "int8", "int8")):
        paths[key].write_bytes(_tflite(saved, quant))
        paths[key].with_suffix(".json").write_text(_contract(dtype, precision))
    paths["bare"].write_bytes(paths["u8"].read_bytes())
    _onnx(model, paths["onnx"], _contract("uint8", "fp32"))
    _onnx(model, paths["onnx_bare"], None)
    _onnx(_tiny_keras("xywh"), paths["xywh"], _contract("uint8", "fp32", "xywh"))
    (folder / "done").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return paths


def write_video(path: Path, frames: int = VIDEO_FRAMES, size: tuple[int, int] = (640, 480)) -> Path:
    """A short mp4 of a moving white disc on grey."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 60, np.uint8)
        cv2.circle(img, (80 + 10 * i, size[1] // 2), 40, (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    return path


def write_images(folder: Path, n: int = 4, corrupt: tuple[int, ...] = ()) -> list[Path]:
    """n small JPEGs; the indices in ``corrupt`` get bytes that are not an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        path = folder / f"img_{i:02d}.jpg"
        if i in corrupt:
            path.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
        else:
            cv2.imwrite(str(path), rng.integers(0, 256, (90 + 10 * i, 120, 3), dtype=np.uint8))
        out.append(path)
    return out


@pytest.fixture(scope="session")
def runtime_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture models (built on first use in the session's shared temp folder)."""
    return build_models(tmp_path_factory.getbasetemp() / "runtime_models")


@pytest.fixture(scope="session")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "runtime_media"
    folder.mkdir(exist_ok=True)
    path = folder / "clip.mp4"
    return path if path.exists() else write_video(path)
