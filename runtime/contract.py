"""The one preprocessing and model-I/O contract of edgeloc.

Training, calibration, export verification and the runtime all call the functions here,
so a model sees the same pixels everywhere. This module needs numpy and OpenCV only: it
is imported by the lean runtime and must never import TensorFlow.

The contract, in short:
- input: one uint8 RGB image, NHWC, resized (stretched, no letterbox) to the model's fixed
  size with OpenCV's bilinear INTER_LINEAR; the model rescales pixels for its backbone itself;
- output ``box``: 4 numbers in [0, 1], normalized to the input image, in ``box_format``
  (``xyxy`` = x1, y1, x2, y2, the default; ``xywh`` = top-left x, y, width, height);
- output ``score``: softmax probabilities over ``labels``; ``labels[0]`` is always
  ``"none"``, the no-object class, so ``1 - score[0]`` is the probability that an object
  is there at all.
"""

from __future__ import annotations

import json
import math
import reprlib
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from runtime.errors import UserError

CONTRACT_KEY = "edgeloc_contract"  # metadata key in ONNX metadata_props and TFLite metadata
CONTRACT_VERSION = 1
NO_OBJECT = "none"
INPUT_NAME = "image"
BOX_OUTPUT = "box"
SCORE_OUTPUT = "score"
BOX_FORMATS = ("xyxy", "xywh")
# Bilinear: 640x480 -> 160x160 takes about 60 us, INTER_AREA 420 us (and 900 us at 128 px,
# where the ratio is not an integer); on a sub-millisecond model that difference is the
# whole runtime overhead. Training sees the same interpolation, so the model learns it.
RESIZE = "linear"
# A contract's input side above this is refused: edgeloc's models take 96-320 px, and a
# damaged size would make every frame allocate gigabytes before the model sees it.
MAX_INPUT_SIDE = 4096


def preprocess(image: np.ndarray, size: int | tuple[int, int], *, bgr: bool = False) -> np.ndarray:
    """Turn one image into the model input: (H, W, 3) uint8 RGB at the model's size.

    Args:
        image: (h, w, 3) uint8 RGB (or BGR with ``bgr=True``, as OpenCV decodes), (h, w)
            or (h, w, 1) grayscale or (h, w, 4) with alpha.
        size: model input size, an int for square inputs or (height, width).
        bgr: the image is in OpenCV's BGR order.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if not isinstance(image, np.ndarray):
        raise UserError(
            f"the image must be a numpy array, got {type(image).__name__}; convert it with "
            "np.asarray(image) (a PIL image gives RGB)"
        )
    if image.size == 0:
        raise UserError(f"the image is empty (shape {image.shape}); pass a non-empty image")
    if image.dtype != np.uint8:  # a float 0-1 image cast to uint8 would be all black
        how = ("(image >> 8).astype(np.uint8) for 16-bit" if image.dtype == np.uint16 else
               "np.clip(image * 255, 0, 255).astype(np.uint8) for floats in [0, 1]")
        raise UserError(f"the image must be uint8 (0-255), got {image.dtype}; convert it first, "
                        f"e.g. {how}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)  # gray has no channel order
        bgr = False
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        batch = " (one image: image[0]; several: predict_batch)" if image.ndim == 4 else ""
        raise UserError(f"the image must be (h, w, 3) RGB, got shape {image.shape}{batch}")
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    # Resize first, then swap channels: the swap then touches only the small image.
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 3)
    if bgr:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return out


def to_xyxy(box: Any, box_format: str, xp: Any = np) -> Any:
    """Convert boxes (..., 4) in ``box_format`` to x1, y1, x2, y2; ``xp`` is np, tf or keras.ops."""
    check_box_format(box_format)
    if box_format == "xyxy":
        return box
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    return xp.stack([x, y, x + w, y + h], axis=-1)


def from_xyxy(box: Any, box_format: str, xp: Any = np) -> Any:
    """Convert x1, y1, x2, y2 boxes (..., 4) to ``box_format``; ``xp`` is np, tf or keras.ops."""
    check_box_format(box_format)
    if box_format == "xyxy":
        return box
    x1, y1, x2, y2 = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    return xp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def check_box_format(box_format: str) -> None:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box format {box_format!r}; valid: {', '.join(BOX_FORMATS)}")


def box_to_pixels(box_xyxy: Any, width: int, height: int) -> np.ndarray:
    """Scale a normalized x1, y1, x2, y2 box to pixels of a (height, width) image, clipped and ordered."""
    return np.array(decode_box(box_xyxy, "xyxy", width, height)[1])


def floats(values: Any) -> list[float]:
    """A small vector as a list of Python floats (one ``tolist`` for a 1-D array)."""
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind == "f":
        return values.tolist()
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


def all_finite(*outputs: Any) -> bool:
    """Whether every value in ``outputs`` (arrays or float lists) is finite: no NaN, no inf.

    The one rule for model outputs: the runtime makes a non-finite answer an error for that
    image, ``benchmarks.latency`` a failed cell. A sum is NaN or infinite exactly when one
    of its terms is (float32 outputs cannot overflow a float64 sum), and costs ~0.1 us.
    """
    for values in outputs:
        if isinstance(values, list):
            total = sum(values)
        else:
            total = float(np.sum(np.asarray(values), dtype=np.float64))
        if not math.isfinite(total):
            return False
    return True


def decode_box(
    box: Any, box_format: str, width: int, height: int
) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """One raw model box -> (normalized x1, y1, x2, y2 clipped to [0, 1], ordered pixel box).

    Straight-line float arithmetic: this runs once per video frame, right after the model
    has pushed the interpreter out of the CPU caches, where every extra call costs ~1 us.
    """
    check_box_format(box_format)
    x1, y1, x2, y2 = floats(box)
    if box_format == "xywh":
        x2, y2 = x1 + x2, y1 + y2
    x1, y1 = min(1.0, max(0.0, x1)), min(1.0, max(0.0, y1))
    x2, y2 = min(1.0, max(0.0, x2)), min(1.0, max(0.0, y2))
    lo_x, hi_x = (x1, x2) if x1 <= x2 else (x2, x1)
    lo_y, hi_y = (y1, y2) if y1 <= y2 else (y2, y1)
    return (x1, y1, x2, y2), (lo_x * width, lo_y * height, hi_x * width, hi_y * height)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching x1, y1, x2, y2 boxes (..., 4); degenerate boxes give 0, never NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def decode_score(score: Any, labels: list[str]) -> tuple[str, float]:
    """Pick the best object class from one score vector: (label, probability of that label)."""
    values = floats(score)
    if len(labels) != len(values):
        raise ValueError(f"score has {len(values)} entries but the contract lists {len(labels)} labels")
    if len(values) == 1:  # a presence-only head
        return labels[0], values[0]
    best = values.index(max(values[1:]), 1)  # index 0 is "none"
    return labels[best], values[best]


@dataclass
class Contract:
    """What an exported model promises; embedded in every model file edgeloc writes.

    Attributes:
        input_size: (height, width) of the uint8 RGB input.
        labels: class names for the ``score`` output; ``labels[0]`` is ``"none"``.
        box_format: ``xyxy`` or ``xywh``, normalized to [0, 1].
        input_dtype: dtype of the input tensor (``uint8``, ``int8`` = pixel - 128, ``float32``).
        color: channel order of the input, always ``RGB``.
        resize: interpolation used by ``preprocess``.
        precision: ``fp32``, ``fp16``, ``dynamic`` or ``int8``.
        calibration: source name and sample count for int8 models, else None.
        source_sha256: hash of the Keras model the file was exported from.
        extra: anything else (backbone, training data, export tool versions).
    """

    input_size: tuple[int, int]
    labels: list[str]
    box_format: str = "xyxy"
    input_dtype: str = "uint8"
    color: str = "RGB"
    resize: str = RESIZE
    precision: str = "fp32"
    calibration: dict[str, Any] | None = None
    source_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.labels = list(self.labels)
        check_box_format(self.box_format)
        if not self.labels or self.labels[0] != NO_OBJECT:
            raise ValueError(f"contract labels must start with {NO_OBJECT!r}, got {self.labels}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Contract:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise UserError(f"model contract is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise UserError("model contract must be a JSON object")
        try:
            version = int(data.get("version", 0))
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"model contract version {data['version']!r} is not a number") from None
        if version > CONTRACT_VERSION:
            raise UserError(
                f"model contract version {data['version']} is newer than this edgeloc "
                f"({CONTRACT_VERSION}); upgrade edgeloc"
            )
        _check_fields(data)
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError, IndexError) as err:  # missing or mistyped fields
            raise UserError(f"model contract is incomplete or malformed: {err}") from None


def _check_fields(data: dict[str, Any]) -> None:
    """Refuse contract fields the runtime would read wrongly rather than trust them: a size
    "64" would be read as 6x4, a label 5 printed as a number, a BGR model fed RGB."""
    size = data.get("input_size", [1, 1])  # a missing field is the constructor's error
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(type(v) in (int, float) and 1 <= v <= MAX_INPUT_SIDE and v == int(v)
                for v in size)  # (32.0 from another tool is 32; NaN fails the range)
    ):
        raise UserError(
            f"model contract input_size {reprlib.repr(size)} is not [height, width] in pixels "
            f"(1..{MAX_INPUT_SIDE})"
        )
    labels = data.get("labels", [])
    if not (
        isinstance(labels, list)
        and all(isinstance(v, str) and v.strip() for v in labels)
        and len(set(labels)) == len(labels)
    ):
        raise UserError(
            f"model contract labels {reprlib.repr(labels)} are not a list of distinct names"
        )
    if data.get("color", "RGB") != "RGB":
        raise UserError(
            f"model contract color {reprlib.repr(data['color'])}: edgeloc feeds RGB pixels only"
        )
    if not isinstance(data.get("extra", {}), dict):
        raise UserError(
            f"model contract extra {reprlib.repr(data['extra'])} is not a JSON object"
        )


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON file that carries a model's contract next to it (same stem)."""
    return Path(model_path).with_suffix(".json")


def model_files(models: Iterable[str | Path]) -> list[Path]:
    """Each model file and its sidecar contract: the inputs an output may never replace."""
    return [f for m in models for f in (Path(m), sidecar_path(m))]


def read_tflite_metadata(data: bytes) -> dict[str, bytes]:
    """Read the ``metadata`` entries (name -> bytes) of a TFLite flatbuffer, without TensorFlow.

    A tiny reader for the three tables involved (Model, Metadata, Buffer) of the TFLite
    schema, so the runtime needs no flatbuffers schema module.
    """
    if len(data) < 8:
        raise ValueError("file too short to be a TFLite model")

    def table_field(table: int, index: int) -> int | None:
        vtable = table - struct.unpack_from("<i", data, table)[0]
        vt_size = struct.unpack_from("<H", data, vtable)[0]
        if 4 + 2 * index >= vt_size:
            return None
        off = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
        return table + off if off else None

    def deref(pos: int) -> int:
        return pos + struct.unpack_from("<I", data, pos)[0]

    def vector(pos: int) -> tuple[int, int]:
        start = deref(pos)
        return struct.unpack_from("<I", data, start)[0], start + 4

    try:
        model = deref(0)
        meta_pos, buf_pos = table_field(model, 6), table_field(model, 4)
        if meta_pos is None or buf_pos is None:
            return {}
        n_buf, buf_start = vector(buf_pos)
        n_meta, meta_start = vector(meta_pos)
        out: dict[str, bytes] = {}
        for i in range(n_meta):
            entry = deref(meta_start + 4 * i)
            name_pos, index_pos = table_field(entry, 0), table_field(entry, 1)
            if name_pos is None:
                continue
            n_chars, chars = vector(name_pos)
            name = data[chars : chars + n_chars].decode("utf-8")
            index = struct.unpack_from("<I", data, index_pos)[0] if index_pos else 0
            if index >= n_buf:
                continue
            buffer = deref(buf_start + 4 * index)
            data_pos = table_field(buffer, 0)
            if data_pos is not None:
                n_bytes, start = vector(data_pos)
                out[name] = bytes(data[start : start + n_bytes])
            else:  # models over 2 GB keep buffers after the flatbuffer: offset, size
                off_pos, size_pos = table_field(buffer, 1), table_field(buffer, 2)
                if off_pos and size_pos:
                    off = struct.unpack_from("<Q", data, off_pos)[0]
                    size = struct.unpack_from("<Q", data, size_pos)[0]
                    out[name] = bytes(data[off : off + size])
        return out
    except (struct.error, UnicodeDecodeError, IndexError) as err:
        raise ValueError(f"not a readable TFLite flatbuffer ({err})") from None
