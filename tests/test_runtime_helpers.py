"""Tiny models and media for the runtime tests, built once per session into a shared folder.

They come from edgeloc's own exporters (export.tflite, export.onnx) on a tiny small_cnn
run directory. The models have a known answer: the heads' kernels are shrunk and their biases set so
every image gives (nearly) the same box and score, which the tests then check in pixels.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks._sealed import unsealed_bytes

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

    spec = ModelSpec(
        backbone="small_cnn",
        image_size=SIZE,
        labels=LABELS,
        alpha=0.5,
        head_units=8,
        box_format=box_format,
    )
    model = build_model(spec)
    box = np.array(BOX_XYXY if box_format == "xyxy" else BOX_XYWH, np.float32)
    for name, bias in (("box", _logit(box)), ("score", np.log(np.array(SCORE, np.float32)))):
        layer = model.get_layer(name)
        kernel, _ = layer.get_weights()
        layer.set_weights([kernel * 1e-3, bias.astype(np.float32)])
    return model


def _run_dir(folder: Path, box_format: str) -> Path:
    """A run directory (model.keras + config.json) as training writes it."""
    from dataclasses import asdict

    from train.model import ModelSpec

    folder.mkdir(parents=True, exist_ok=True)
    _tiny_keras(box_format).save(folder / "model.keras")
    spec = ModelSpec(backbone="small_cnn", image_size=SIZE, labels=LABELS, box_format=box_format)
    config = {"model": {**asdict(spec), "labels": list(LABELS)}, "data": {}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _strip_contract(src: Path, dst: Path) -> None:
    """Copy a model without its embedded contract and seal (and without a sidecar)."""
    from runtime.contract import CONTRACT_KEY

    if src.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(src))
        del proto.metadata_props[:]
        onnx.save(proto, str(dst))
    else:  # rename the TFLite metadata entry in place: same length, still a valid flatbuffer
        data = unsealed_bytes(src.read_bytes())
        assert data.count(CONTRACT_KEY.encode()) == 1
        dst.write_bytes(data.replace(CONTRACT_KEY.encode(), b"x" * len(CONTRACT_KEY)))


def build_models(folder: Path) -> dict[str, Path]:
    """Export the fixture models once with edgeloc's exporters (a marker says they are complete)."""
    names = {
        "f32": "tiny_f32.tflite",  # float I/O
        "u8": "tiny_u8.tflite",  # int8 weights, uint8 I/O
        "i8": "tiny_i8.tflite",  # int8 weights, int8 I/O (pixel - 128)
        "unsealed": "unsealed_u8.tflite",  # the u8 file without its digest (an older export)
        "bare": "bare/bare_u8.tflite",  # uint8 I/O, no contract at all
        "onnx": "tiny.onnx",  # fp32, uint8 input
        "onnx_i8": "tiny_i8.onnx",  # static QDQ int8, uint8 input
        "onnx_bare": "bare/bare.onnx",  # no contract
        "xywh": "tiny_xywh.onnx",  # xywh box format
    }
    paths = {k: folder / v for k, v in names.items()}
    if (folder / "done").exists():
        return paths
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from export.onnx import export_onnx
    from export.options import CalibrationOptions
    from export.tflite import export_tflite

    (folder / "bare").mkdir(parents=True, exist_ok=True)
    calib = folder / "calib"
    write_images(calib, n=8, size=(SIZE * 2, SIZE * 2))
    run = _run_dir(folder / "run", "xyxy")
    common = {"calib": CalibrationOptions(str(calib), size=8), "verify": None}
    export_tflite(run, paths["f32"], quantize="none", verify=None)
    export_tflite(run, paths["u8"], quantize="int8", io="uint8", **common)
    export_tflite(run, paths["i8"], quantize="int8", io="int8", **common)
    export_onnx(run, paths["onnx"], quantize="none", verify=None)
    export_onnx(run, paths["onnx_i8"], quantize="int8", **common)
    export_onnx(_run_dir(folder / "run_xywh", "xywh"), paths["xywh"], quantize="none", verify=None)
    paths["unsealed"].write_bytes(unsealed_bytes(paths["u8"].read_bytes()))
    _strip_contract(paths["u8"], paths["bare"])
    _strip_contract(paths["onnx"], paths["onnx_bare"])
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


def write_images(
    folder: Path, n: int = 4, corrupt: tuple[int, ...] = (), size: tuple[int, int] | None = None
) -> list[Path]:
    """n small JPEGs; the indices in ``corrupt`` get bytes that are not an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        path = folder / f"img_{i:02d}.jpg"
        if i in corrupt:
            path.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
        else:
            h, w = size or (90 + 10 * i, 120)
            cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
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


@contextmanager
def serving(model: Path, video: Path, address: str) -> Iterator[dict]:
    """``runtime.webcam.run`` serving ``video`` (looped) at ``address`` in a thread.

    Yields a dict with the page's ``url`` once the server is up; on exit the run is stopped
    and joined, and the dict gets its ``summary`` and whether the thread is still ``alive``.
    """
    from runtime import webcam

    stop, started, box = threading.Event(), threading.Event(), {}
    thread = threading.Thread(
        target=lambda: box.update(
            summary=webcam.run(
                model,
                str(video),
                display=False,
                serve=address,
                loop=True,
                threads=1,
                stop=stop,
                on_start=lambda info: (box.update(info), started.set()),
            )
        )
    )
    thread.start()
    try:
        assert started.wait(30), "the MJPEG server did not start within 30 s"
        yield box
    finally:
        stop.set()
        thread.join(20)
        box["alive"] = thread.is_alive()
