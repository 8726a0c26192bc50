"""What runs inside one benchmark cell: a model (or baseline) behind one small interface.

Runners are looked up by name in ``RUNNERS``:
- ``runtime``: a .tflite/.onnx file through ``runtime.Localizer`` (the lean runtime users
  deploy), with a named engine from ``runtime.BACKENDS`` and ONNX Runtime providers;
- ``keras``: the float Keras model (needs TensorFlow), on CPU or GPU;
- ``haar``: an OpenCV Haar cascade baseline.

Each runner prepares an input once, then ``call(x)`` is the only thing timed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from runtime.contract import preprocess, to_xyxy

log = logging.getLogger(__name__)


class Skip(Exception):
    """This cell cannot run on this machine (no GPU, engine not installed): a skipped cell."""


class Runner:
    """Common interface; subclasses set the attributes in ``__init__``."""

    backend: str = ""
    provider: str | None = None
    device: str = "cpu"
    input_size: tuple[int, int] | None = None
    precision: str | None = None
    box_format: str = "xyxy"
    notes: list[str]

    def prepare(self, image: np.ndarray) -> Any:
        """RGB image -> the argument of ``call`` (done outside the timed region)."""
        assert self.input_size is not None
        return preprocess(image, self.input_size)[None]  # (1, H, W, 3) uint8

    def call(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """The timed call: raw (box, score) outputs."""
        raise NotImplementedError

    def box(self, image: np.ndarray) -> np.ndarray:
        """Normalized x1, y1, x2, y2 box predicted for one RGB image."""
        box, _ = self.call(self.prepare(image))
        return np.clip(
            to_xyxy(np.asarray(box, np.float64).reshape(-1, 4)[0], self.box_format), 0, 1
        )

    def frame(self, bgr: np.ndarray) -> Any:
        """One video frame through the whole pipeline (preprocess, model, postprocess)."""
        return self.box(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def cost(self) -> dict[str, int] | None:
        """Parameters and MACs, or None when they cannot be counted here."""
        return None


class RuntimeRunner(Runner):
    """A .tflite/.onnx file through the lean runtime's Localizer."""

    def __init__(self, path: str, backend: str, threads: int | None, provider: str | None) -> None:
        from runtime import BACKENDS, Localizer  # noqa: PLC0415
        from runtime.backends import installed  # noqa: PLC0415

        if backend not in BACKENDS:
            raise ValueError(f"unknown runtime backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if not installed(backend):
            raise Skip(
                f"{BACKENDS[backend].package} is not installed "
                f"(pip install {BACKENDS[backend].package})"
            )
        if provider and provider != "CPUExecutionProvider":
            import onnxruntime as ort  # noqa: PLC0415

            if provider not in ort.get_available_providers():
                raise Skip(
                    f"{provider} is not available in this onnxruntime build "
                    f"(has: {', '.join(ort.get_available_providers())})"
                )
        self.notes = []
        self.path = path
        self.loc = Localizer.load(
            path, backend=backend, threads=threads, providers=[provider] if provider else None
        )
        self.backend = self.loc.backend_name
        self.provider = self.loc.provider if BACKENDS[backend].format == "onnx" else None
        if provider and self.provider != provider:
            raise Skip(
                f"{provider} did not initialise (session fell back to {self.provider}); "
                "no usable GPU?"
            )
        self.device = (
            "gpu" if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        )
        c = self.loc.contract
        self.input_size, self.precision, self.box_format = (
            tuple(c.input_size),
            c.precision,
            c.box_format,
        )
        self.source_sha256 = c.source_sha256
        self._engine = BACKENDS[backend].format

    def call(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.loc.invoke(x)

    def frame(self, bgr: np.ndarray) -> Any:
        return self.loc.predict(bgr, bgr=True)

    def cost(self) -> dict[str, int] | None:
        from benchmarks import _cost  # noqa: PLC0415

        if self._engine == "onnx":
            return _cost.onnx_cost(self.path)
        return _cost.tflite_cost(self.loc.raw_engine())


class KerasRunner(Runner):
    """The float Keras model through a compiled tf.function (TensorFlow required)."""

    def __init__(self, path: str, threads: int | None, device: str) -> None:
        try:
            import tensorflow as tf  # noqa: PLC0415
        except ImportError:
            raise Skip("TensorFlow is not installed (pip install -e .[train])") from None
        if threads:  # must happen before TensorFlow creates its thread pools
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        gpus = tf.config.list_physical_devices("GPU")
        if device == "gpu" and not gpus:
            raise Skip("TensorFlow sees no GPU (CUDA build and an NVIDIA GPU are needed)")
        from train.config import load_run  # noqa: PLC0415

        self.notes = []
        self.model, config = load_run(path)
        spec = config.get("model", {})
        size = int(self.model.inputs[0].shape[1])
        self.input_size, self.box_format = (size, size), str(spec.get("box_format", "xyxy"))
        self.backend, self.precision, self.device = "keras", "fp32", device
        self.provider = "GPU" if device == "gpu" else "CPU"
        self._tf_device = "/GPU:0" if device == "gpu" else "/CPU:0"
        self.source_sha256 = None
        self._tf = tf
        with tf.device(self._tf_device):
            self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def call(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        with self._tf.device(self._tf_device):
            out = self._fn(x)
        return out["box"].numpy(), out["score"].numpy()  # .numpy() waits for the device

    def cost(self) -> dict[str, int] | None:
        from benchmarks._cost import keras_cost  # noqa: PLC0415

        return keras_cost(self.model)


class HaarRunner(Runner):
    """An OpenCV Haar cascade; the largest detection is the box, none = an empty box."""

    FRAME = (640, 480)  # timed on a camera-sized frame: cascades scan the whole image

    def __init__(self, cascade: str, threads: int | None) -> None:
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise Skip(
                "this OpenCV build has no Haar cascades (OpenCV 5 dropped them; use opencv 4.x)"
            )
        path = Path(cv2.data.haarcascades) / cascade
        self.clf = cv2.CascadeClassifier(str(path))
        if self.clf.empty():
            raise Skip(f"Haar cascade {cascade} not found in {path.parent}")
        if threads:
            cv2.setNumThreads(int(threads))
        self.notes = [f"timed on a {self.FRAME[0]}x{self.FRAME[1]} frame"]
        self.backend, self.provider, self.precision = "opencv", None, None
        self.input_size = (self.FRAME[1], self.FRAME[0])
        self.source_sha256 = None

    def prepare(self, image: np.ndarray) -> Any:
        return cv2.resize(image, self.FRAME, interpolation=cv2.INTER_AREA)

    def _detect(self, rgb: np.ndarray) -> np.ndarray:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        h, w = gray.shape
        side = max(24, min(h, w) // 12)
        found = self.clf.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=4, minSize=(side, side)
        )
        if len(found) == 0:
            return np.zeros(4)
        x, y, bw, bh = max(found, key=lambda r: r[2] * r[3])  # the largest detection
        return np.array([x / w, y / h, (x + bw) / w, (y + bh) / h], np.float64)

    def call(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._detect(x), np.zeros(0)

    def box(self, image: np.ndarray) -> np.ndarray:
        scale = 640 / max(image.shape[:2])  # the same work a camera frame would cost
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return self._detect(image)


# Haar cascades shipped with opencv-python 4.x, by baseline name.
HAAR_CASCADES = {
    "haar_cat": "haarcascade_frontalcatface.xml",
    "haar_face": "haarcascade_frontalface_default.xml",
}


def _runtime(spec: dict[str, Any]) -> Runner:
    return RuntimeRunner(spec["file"], spec["backend"], spec.get("threads"), spec.get("provider"))


def _keras(spec: dict[str, Any]) -> Runner:
    return KerasRunner(spec["file"], spec.get("threads"), spec.get("device", "cpu"))


def _haar(spec: dict[str, Any]) -> Runner:
    if spec["variant"] not in HAAR_CASCADES:
        raise ValueError(f"unknown baseline {spec['variant']!r}; valid: {', '.join(HAAR_CASCADES)}")
    return HaarRunner(HAAR_CASCADES[spec["variant"]], spec.get("threads"))


RUNNERS: dict[str, Callable[[dict[str, Any]], Runner]] = {
    "runtime": _runtime,
    "keras": _keras,
    "haar": _haar,
}


def make_runner(spec: dict[str, Any]) -> Runner:
    """Build the runner a cell spec names (``spec['runner']``)."""
    name = spec["runner"]
    if name not in RUNNERS:
        raise ValueError(f"unknown runner {name!r}; valid: {', '.join(RUNNERS)}")
    return RUNNERS[name](spec)
