"""The Localizer: one model file in, one box, label and score per image out."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, TensorInfo, open_backend
from runtime.contract import (
    BOX_OUTPUT,
    CONTRACT_KEY,
    NO_OBJECT,
    SCORE_OUTPUT,
    Contract,
    all_finite,
    decode_box,
    decode_score,
    floats,
    preprocess,
    sidecar_path,
)
from runtime.errors import ModelError, UserError
from runtime.integrity import INTEGRITY

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Result:
    """One prediction.

    Attributes:
        box: (x1, y1, x2, y2) in pixels of the input image.
        box_norm: the same box normalized to [0, 1] (always x1, y1, x2, y2).
        label: best object class (never ``"none"`` unless the model has a single output class).
        score: probability of ``label``.
        scores: all class probabilities, ``scores[0]`` is "none".
        present: ``score >= threshold``.
        latency_ms: model invoke time (quantize, run, dequantize).
        total_ms: preprocess + invoke + postprocess.
        backend: engine name (``ai_edge_litert``, ``onnxruntime``, ...).
        provider: what ran it (``CPU`` for TFLite, the ONNX Runtime execution provider).
    """

    box: tuple[float, float, float, float]
    box_norm: tuple[float, float, float, float]
    label: str
    score: float
    scores: np.ndarray
    present: bool
    latency_ms: float
    total_ms: float
    backend: str
    provider: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (box rounded to 0.01 px)."""
        return {
            "box": [round(v, 2) for v in self.box],
            "label": self.label,
            "score": round(self.score, 4),
            "present": self.present,
            "latency_ms": round(self.latency_ms, 3),
            "total_ms": round(self.total_ms, 3),
        }


class Localizer:
    """A loaded localizer model; build one with ``Localizer.load(path)``."""

    def __init__(self, backend: Backend, contract: Contract, path: Path, threshold: float = 0.5):
        self._backend = backend
        self.contract = contract
        self.path = path
        try:
            self.threshold = float(threshold)
        except (TypeError, ValueError):
            self.threshold = math.nan
        if not 0.0 <= self.threshold <= 1.0:  # 2 or NaN: no image would ever be `present`
            raise UserError(f"threshold must be a score in [0, 1], got {threshold!r} (default 0.5)")
        self.backend_name = backend.name
        self.provider = backend.provider
        self._box_i, self._score_i = _pick_outputs(backend.outputs)
        for out in backend.outputs:  # integers with no scale: codes 0..255 read as a box
            if np.dtype(out.dtype).kind in "iu" and not out.quant[0]:
                raise UserError(
                    f"{path}: output {out.name!r} is {out.dtype} without a quantization "
                    "scale, so it cannot be read as a box or probabilities; re-export the "
                    "model with float outputs (edgeloc's exporters do)"
                )
        box_width = (backend.outputs[self._box_i].shape or (-1,))[-1]
        width = (backend.outputs[self._score_i].shape or (-1,))[-1]
        if box_width > 0 and box_width != 4:
            raise UserError(f"{path}: the box output has {box_width} values, not 4; re-export it")
        if width > 0 and width != len(contract.labels):
            raise UserError(
                f"{path}: the score output has {width} classes but the contract lists "
                f"{len(contract.labels)} labels {contract.labels}; re-export the model"
            )
        self._size = contract.input_size
        self._labels = contract.labels

    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        providers: Any = None,
        *,
        threshold: float = 0.5,
        verify: bool = True,
    ) -> Localizer:
        """Open a .tflite or .onnx model with the chosen (or first installed) engine.

        Args:
            path: model file.
            backend: ``auto``, ``tflite``, ``onnx`` or a name in ``runtime.BACKENDS``.
            threads: CPU threads for the engine (None: one per core, at most 4).
            providers: ONNX Runtime providers or aliases (``cuda``, ``tensorrt``,
                ``openvino``, ``coreml``); unavailable ones warn and fall back to CPU.
            threshold: score under which ``Result.present`` is False.
            verify: check the digest edgeloc embeds in the file and refuse a damaged one
                (False: load files edited by other tools unchecked).
        """
        path = Path(path)
        engine = open_backend(path, backend, threads, providers, verify=verify)
        _check_layout(engine.input, path)
        contract = _read_contract(path, engine)
        embedded = CONTRACT_KEY in engine.metadata  # a sidecar's claim speaks for another file
        if verify and embedded and not engine.sealed and contract.extra.get("integrity") == INTEGRITY:
            raise UserError(
                f"{path} is damaged: its contract says it was sealed with a digest but no "
                "valid digest is left; re-copy or re-export the model (--no-verify loads it "
                "unchecked)"
            )
        if not verify:
            log.info("%s loaded without its integrity check (verify=False)", path)
        _check_input(engine.input, contract, path)
        return cls(engine, contract, path, threshold)

    def invoke(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run preprocessed (N, H, W, 3) uint8 pixels: raw (box, score) in contract form."""
        out = self._backend.run(tensor)
        box, score = out[self._box_i], out[self._score_i]
        rows = (len(tensor),)
        if np.shape(box)[:1] != rows or np.shape(score)[:1] != rows:  # a broken dynamic batch
            raise ModelError(
                f"model {self.path} returned box {np.shape(box)} and score {np.shape(score)} "
                f"for {rows[0]} images; the model is broken: re-export it"
            )
        return box, score

    def prepare(self, image: np.ndarray, *, bgr: bool = False) -> np.ndarray:
        """The contract's preprocessing alone: (1, H, W, 3) uint8 model pixels for ``predict``."""
        return preprocess(image, self._size, bgr=bgr)[None]

    def predict(
        self, image: np.ndarray, *, bgr: bool = False, pixels: np.ndarray | None = None
    ) -> Result:
        """Localize the object in one (h, w, 3) uint8 image (RGB, or BGR with ``bgr=True``).

        ``pixels`` (from ``prepare``, e.g. computed in a capture thread) skips preprocessing.
        """
        t0 = time.perf_counter()
        if pixels is None:
            pixels = preprocess(image, self._size, bgr=bgr)[None]  # (1, H, W, 3)
        elif getattr(pixels, "shape", None) != (1, *self._size, 3) or pixels.dtype != np.uint8:
            raise UserError(  # else the engine's error blames the model, or row 0 answers
                f"pixels must be this model's prepare(image) output, (1, {self._size[0]}, "
                f"{self._size[1]}, 3) uint8; got {getattr(pixels, 'shape', type(pixels))} "
                f"{getattr(pixels, 'dtype', '')}"
            )
        t1 = time.perf_counter()
        box, score = self.invoke(pixels)
        t2 = time.perf_counter()
        return self._result(box[0], score[0], image.shape, t2 - t1, t0)

    def predict_batch(self, images: Sequence[np.ndarray], *, bgr: bool = False) -> list[Result]:
        """Localize one object in each image; batched in one call where the engine allows."""
        if isinstance(images, np.ndarray) and images.ndim != 4:  # rows of one image, not images
            raise UserError(
                f"predict_batch() takes a list of images or an (N, h, w, 3) array, got one "
                f"array of shape {images.shape}; use predict() for one image"
            )
        images = images if isinstance(images, (list, tuple, np.ndarray)) else list(images)
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        pixels = np.stack([preprocess(im, self._size, bgr=bgr) for im in images])  # (N, H, W, 3)
        t1 = time.perf_counter()
        box, score = self.invoke(pixels)
        each = (time.perf_counter() - t1) / len(images)
        results = [
            self._result(box[i], score[i], im.shape, each, t0) for i, im in enumerate(images)
        ]
        total = (time.perf_counter() - t0) * 1e3 / len(images)
        for r in results:
            r.total_ms = total
        return results

    def _result(
        self, box: np.ndarray, score: np.ndarray, shape: tuple, invoke_s: float, t0: float
    ) -> Result:
        h, w = shape[:2]
        box_values, score_values = floats(box), floats(score)
        if not all_finite(box_values, score_values):
            raise ModelError(
                f"model {self.path} returned non-finite outputs (box {box_values}, score "
                f"{score_values}); the model is broken: re-export or retrain it"
            )
        if len(box_values) != 4 or len(score_values) != len(self._labels):  # dynamic shapes
            raise ModelError(
                f"model {self.path} returned {len(box_values)} box values and "
                f"{len(score_values)} scores for {len(self._labels)} labels; re-export it"
            )
        norm, px = decode_box(box_values, self.contract.box_format, w, h)
        label, prob = decode_score(score_values, self._labels)
        return Result(
            box=px,
            box_norm=norm,
            label=label,
            score=prob,
            scores=score,
            present=prob >= self.threshold,
            latency_ms=invoke_s * 1e3,
            total_ms=(time.perf_counter() - t0) * 1e3,
            backend=self.backend_name,
            provider=self.provider,
        )

    def raw_engine(self) -> Any:
        """The underlying interpreter or session (for bare-invoke benchmarks)."""
        return self._backend.raw()

    def __repr__(self) -> str:
        h, w = self._size
        return (
            f"Localizer({self.path.name}, {self.backend_name}/{self.provider}, {w}x{h}, "
            f"labels={self._labels}, {self.contract.precision})"
        )


def _read_contract(path: Path, engine: Backend) -> Contract:
    """The embedded contract, else the sidecar JSON, else one inferred from the tensors (warns)."""
    side = sidecar_path(path)
    try:
        if CONTRACT_KEY in engine.metadata:
            return Contract.from_json(engine.metadata[CONTRACT_KEY])
        if side.is_file() and side != path:
            log.info("contract for %s read from %s", path, side)
            return Contract.from_json(side.read_bytes())
    except OSError as err:
        raise UserError(f"cannot read contract {side}: {err.strerror or err}") from None
    except ValueError as err:  # JSON or a field that is not what the contract says
        where = path if CONTRACT_KEY in engine.metadata else side
        raise UserError(f"{where}: {err}; re-export the model") from None
    return _infer_contract(path, engine)


def _infer_contract(path: Path, engine: Backend) -> Contract:
    shape = engine.input.shape
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape[1:3]):
        raise UserError(
            f"{path} has no edgeloc contract and its input shape {shape} has no fixed size; "
            f"re-export it with edgeloc or write a contract to {sidecar_path(path)}"
        )
    box_i, score_i = _pick_outputs(engine.outputs)
    k = int(engine.outputs[score_i].shape[-1])
    labels = [NO_OBJECT, "object"] if k == 2 else [NO_OBJECT] + [f"class{i}" for i in range(1, k)]
    contract = Contract(
        input_size=(shape[1], shape[2]),
        labels=labels,
        input_dtype=str(engine.input.dtype),
        precision="unknown",
    )
    warnings.warn(
        f"{path.name} carries no edgeloc contract; assuming {shape[2]}x{shape[1]} "
        f"{contract.input_dtype} RGB input, xyxy boxes and labels {labels} "
        f"(add {sidecar_path(path).name} or re-export with edgeloc to fix)",
        stacklevel=4,
    )
    return contract


def _check_layout(info: TensorInfo, path: Path) -> None:
    shape = info.shape
    if len(shape) != 4 or shape[-1] != 3:
        layout = " (NCHW? edgeloc models are NHWC)" if len(shape) == 4 and shape[1] == 3 else ""
        raise UserError(
            f"{path} input {info.name!r} has shape {shape}{layout}; "
            "expected (1, H, W, 3) RGB: re-export the model with edgeloc"
        )
    if shape[0] not in (1, -1):  # a fixed batch of N fails on every single image at run time
        raise UserError(
            f"{path} input {info.name!r} has a fixed batch of {shape[0]} images {shape}; "
            "edgeloc runs one image at a time: re-export the model with batch 1 or a dynamic batch"
        )


def _check_input(info: TensorInfo, contract: Contract, path: Path) -> None:
    h, w = info.shape[1], info.shape[2]
    if h > 0 and w > 0 and (h, w) != tuple(contract.input_size):
        raise UserError(
            f"{path} input is {w}x{h} but its contract says "
            f"{contract.input_size[1]}x{contract.input_size[0]}; re-export the model"
        )
    if contract.input_dtype != str(info.dtype):
        log.warning(
            "%s: contract input dtype %s, tensor dtype %s; following the tensor",
            path,
            contract.input_dtype,
            info.dtype,
        )


def _pick_outputs(outputs: list[TensorInfo]) -> tuple[int, int]:
    """Indices of the box and score outputs: by name, else by shape (4 vs K)."""
    if len(outputs) != 2:
        raise UserError(
            f"model has {len(outputs)} outputs; an edgeloc localizer has 'box' and "
            "'score' (boxes and scores must stay separate for int8)"
        )
    names = [o.name.lower() for o in outputs]
    box = [i for i, n in enumerate(names) if BOX_OUTPUT in n]
    score = [i for i, n in enumerate(names) if SCORE_OUTPUT in n]
    if len(box) == 1 and len(score) == 1 and box != score:
        return box[0], score[0]
    last = [o.shape[-1] if o.shape else -1 for o in outputs]
    fours = [i for i, d in enumerate(last) if d == 4]
    if len(fours) == 1:  # the other one is the score (its width is checked against the labels)
        return fours[0], 1 - fours[0]
    if fours:  # both 4 wide (4 labels) and neither named: a guess would be a coin flip
        raise UserError(
            f"cannot tell the box output from the score output among {names}: both have 4 "
            "values; name them 'box' and 'score' (edgeloc's exporters do) and re-export"
        )
    raise UserError(
        f"cannot tell the box output among {names} with shapes {[o.shape for o in outputs]}"
    )
