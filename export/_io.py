"""Shared plumbing of the exporters: model loading, atomic writes, contracts and results."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.contract import BOX_OUTPUT, SCORE_OUTPUT, Contract, sidecar_path
from runtime.errors import UserError

log = logging.getLogger(__name__)

# --quantize value -> precision name written into the contract and file names.
PRECISIONS = {"none": "fp32", "fp32": "fp32", "fp16": "fp16", "dynamic": "dynamic", "int8": "int8"}
IO_TYPES = ("uint8", "int8", "float32")
SCORE_MEANING = "softmax probabilities over labels; labels[0] = 'none' (no object)"




class VerificationFailed(RuntimeError):
    """The exported model lost more accuracy than allowed; the file was not kept."""


@dataclass
class LoadedModel:
    """A Keras localizer ready to export.

    Attributes:
        model: the keras.Model with outputs ``box`` (B, 4) and ``score`` (B, K).
        config: the run's resolved config (``model`` and ``data`` sections).
        path: the ``.keras`` file it came from (None for an in-memory model).
        sha256: hash of that file (None for an in-memory model).
    """

    model: Any
    config: dict[str, Any]
    path: Path | None
    sha256: str | None

    @property
    def image_size(self) -> int:
        return int(self.model.inputs[0].shape[1])

    @property
    def labels(self) -> list[str]:
        return list(self.config.get("model", {}).get("labels") or ["none", "object"])

    @property
    def box_format(self) -> str:
        return str(self.config.get("model", {}).get("box_format", "xyxy"))

    @property
    def out_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


@dataclass
class ExportResult:
    """What one export produced.

    Attributes:
        path: the model file (only there when ``ok``).
        format: ``tflite`` or ``onnx``.
        precision: ``fp32``, ``fp16``, ``dynamic`` or ``int8``.
        size_bytes: file size.
        contract: the contract embedded in the file.
        verification: accuracy against the Keras model (None when verification was off).
        seconds: wall time of conversion and verification.
    """

    path: Path
    format: str
    precision: str
    size_bytes: int
    contract: Contract
    verification: Any = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.passed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(model: Any) -> LoadedModel:
    """Accept a run directory, a ``.keras`` file or a keras.Model; check its outputs."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        from train.config import load_run

        path = Path(model).expanduser()
        if not path.exists():
            raise UserError(f"model {path} not found; pass --model RUN_DIR or a .keras file")
        file = path / "model.keras" if path.is_dir() else path
        if file.is_file() and file.suffix == ".keras" and not zipfile.is_zipfile(file):
            raise UserError(
                f"model file {file} is corrupt (a .keras file is a zip archive); "
                "re-save the model or retrain"
            )
        try:
            keras_model, config = load_run(path)
        except (FileNotFoundError, ValueError) as err:
            raise UserError(str(err)) from None
        loaded = LoadedModel(keras_model, config, file, sha256_file(file))
    else:
        loaded = LoadedModel(model, _config_from_model(model), None, None)
    check_outputs(loaded)
    return loaded


def _config_from_model(model: Any) -> dict[str, Any]:
    from train.config import _config_from_model as rebuild

    return rebuild(model)


def check_outputs(loaded: LoadedModel) -> None:
    """The model must map (1, S, S, 3) pixels to {"box": (1, 4), "score": (1, K)}."""
    model = loaded.model
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(model.inputs) != 1 or len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise UserError(
            f"model input has shape {shape}; an edgeloc localizer takes (B, S, S, 3) "
            "RGB pixels: build it with train.model.build_model"
        )
    size = int(shape[1])
    out = model(np.zeros((1, size, size, 3), np.float32), training=False)
    if not isinstance(out, dict) or set(out) != {BOX_OUTPUT, SCORE_OUTPUT}:
        got = sorted(out) if isinstance(out, dict) else f"one unnamed {type(out).__name__}"
        if isinstance(out, (list, tuple)):
            got = f"{len(out)} unnamed tensors"
        raise UserError(
            f"model outputs are {got}; the contract needs two named outputs "
            "'box' (B, 4) and 'score' (B, K): build it with train.model.build_model"
        )
    box, score = tuple(out[BOX_OUTPUT].shape), tuple(out[SCORE_OUTPUT].shape)
    if box != (1, 4) or len(score) != 2:
        raise UserError(f"model outputs box {box} and score {score}; expected (B, 4) and (B, K)")
    k = score[1]
    labels = loaded.labels
    if len(labels) != k:
        raise UserError(
            f"model score has {k} classes but its config lists labels {labels}; "
            "fix config.json or retrain"
        )


def default_out(loaded: LoadedModel, fmt: str, precision: str) -> Path:
    """RUN/model_<precision>.<fmt>, next to the .keras file."""
    return loaded.out_dir / f"model_{precision}.{fmt}"


def check_writable(out: Path) -> None:
    """Fail early with advice when the output folder cannot take a new file."""
    folder = out.parent
    if out.is_dir():
        raise UserError(
            f"output path {out} is a directory; pass --out FILE.{out.suffix or 'tflite'}"
        )
    if not folder.is_dir():
        raise UserError(
            f"output folder {folder} does not exist; create it or pass --out elsewhere"
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".edgeloc-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise UserError(
            f"output folder {folder} is not writable ({err.strerror}); "
            "pass --out to a writable folder"
        ) from None


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it to ``out`` only if the block succeeds.

    A killed export leaves only a hidden ``.<stem>.*.tmp<suffix>`` file, never a truncated
    ``out``; such leftovers older than an hour are removed here.
    """
    _remove_stale(out)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, out)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_verified(
    out: Path, data: bytes, result: ExportResult, holdout: Any, max_iou_drop: float, t0: float
) -> ExportResult:
    """Write ``data`` beside ``out``, verify it there (if ``holdout``), then rename it into place.

    A failed verification raises VerificationFailed and leaves nothing at ``out``.
    """
    import time

    with staged(out) as tmp:
        tmp.write_bytes(data)
        if holdout is not None:
            from export.verify import verify_model

            result.verification = verify_model(
                tmp,
                holdout,
                fmt=result.format,
                precision=result.precision,
                max_iou_drop=max_iou_drop,
            )
        result.seconds = time.perf_counter() - t0
        if not result.ok:
            raise VerificationFailed(result)
    log.info("wrote %s (%d bytes, %.1f s)", out, len(data), result.seconds)
    return result


def per_channel_choices(per_channel: bool | None, precision: str, verify: bool) -> list[bool]:
    """int8 weight scales to try in order: per-tensor first (smallest file), then per-channel
    if the per-tensor model fails verification; an explicit choice is tried alone."""
    if precision != "int8":
        return [False]
    if per_channel is not None:
        return [bool(per_channel)]
    return [False, True] if verify else [False]


def write_first_verified(
    build: Callable[[bool], tuple[bytes, ExportResult]],
    *,
    per_channel: bool | None,
    precision: str,
    out: Path,
    holdout: Any,
    max_iou_drop: float,
    t0: float,
) -> ExportResult:
    """Build (``build(per_channel) -> (bytes, result)``) and ``write_verified`` an export; an
    int8 model whose per-tensor weights fail verification is rebuilt per channel."""
    choices = per_channel_choices(per_channel, precision, holdout is not None)
    for attempt, channelwise in enumerate(choices):
        data, result = build(channelwise)
        try:
            return write_verified(out, data, result, holdout, max_iou_drop, t0)
        except VerificationFailed:
            if attempt == len(choices) - 1:
                raise
            log.warning(
                "%s int8 with per-tensor weights lost %.4f mean IoU; trying per-channel weights",
                result.format,
                result.verification.iou_drop,
            )
    raise AssertionError("unreachable")


def _remove_stale(out: Path, max_age_s: float = 3600.0) -> None:
    import time

    for old in out.parent.glob(f".{out.stem}.*.tmp{out.suffix}"):
        try:
            if time.time() - old.stat().st_mtime > max_age_s:
                old.unlink()
        except OSError:
            pass  # another export's file, or already gone


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and os.replace."""
    with staged(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_sidecar(model_path: Path, contract: Contract) -> Path:
    """The contract as JSON beside the model (same stem), for tools that cannot read metadata."""
    side = sidecar_path(model_path)
    write_bytes_atomic(side, (contract.to_json() + "\n").encode())
    return side


def make_contract(
    loaded: LoadedModel,
    *,
    fmt: str,
    precision: str,
    input_dtype: str,
    calibration: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Contract:
    """The contract of one exported file."""
    spec = loaded.config.get("model", {})
    info = {
        "format": fmt,
        "score_meaning": SCORE_MEANING,
        "outputs": {"box": "box", "score": "score"},
        "backbone": spec.get("backbone"),
        "train_data": loaded.config.get("data", {}).get("source"),
        "source_model": loaded.path.name if loaded.path else None,
        **(extra or {}),
    }
    size = loaded.image_size
    return Contract(
        input_size=(size, size),
        labels=loaded.labels,
        box_format=loaded.box_format,
        input_dtype=input_dtype,
        precision=precision,
        calibration=calibration,
        source_sha256=loaded.sha256,
        extra=info,
    )


def check_choice(value: str, valid: Any, what: str) -> str:
    """Return ``value`` if it is one of ``valid``; else an UserError listing them."""
    if value not in valid:
        raise UserError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value
