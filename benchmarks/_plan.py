"""Which cells a benchmark run measures: model variants x backends x thread counts.

Variants come from ``--model``: a run directory (model.keras plus the exported
model_*.tflite / model_*.onnx next to it), a folder of exported models, or one file.
Backends come from the runtime's registry (``runtime.BACKENDS``) plus the Keras model
and the Haar baselines. Cells that cannot run here are planned anyway and marked
skipped with the reason, so the table says what was not measured and why.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._runners import HAAR_CASCADES
from runtime._cli import importable
from runtime.backends import FORMATS as RUNTIME_FORMATS
from runtime.errors import UserError

log = logging.getLogger(__name__)

MODEL_SUFFIXES = {**{f".{f}": f for f in RUNTIME_FORMATS}, ".keras": "keras"}
FORMATS = ("tflite", "onnx", "keras", "haar")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
# ONNX Runtime providers always listed (GPU ones become skipped cells when absent).
ORT_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_IGNORED_PROVIDERS = ("AzureExecutionProvider",)




@dataclass
class Variant:
    """One model file (or baseline) to measure.

    Attributes:
        name: shown in tables (file name, or baseline name).
        file: model path (None for baselines).
        format: tflite | onnx | keras | haar.
        kind: model | baseline | extra.
        precision: from the file name until a cell reads the model's contract.
        run_config: config.json of the run the model belongs to, if any.
    """

    name: str
    file: Path | None
    format: str
    kind: str = "model"
    precision: str | None = None
    run_config: dict[str, Any] | None = field(default=None, repr=False)


def guess_precision(path: Path) -> str | None:
    """fp32/fp16/dynamic/int8 from tokens of the file name (model_int8.tflite -> int8)."""
    if path.suffix == ".keras":
        return "fp32"
    tokens = set(re.split(r"[^a-z0-9]+", path.stem.lower()))
    for name, words in (
        ("int8", {"int8", "quant", "uint8"}),
        ("fp16", {"fp16", "float16", "f16"}),
        ("dynamic", {"dynamic", "dyn", "drq"}),
        ("fp32", {"fp32", "float32", "float"}),
    ):
        if tokens & words:
            return name
    return None


def contract_labels(path: Path | None) -> list[str]:
    """Labels from a model's contract (TFLite metadata or sidecar JSON), read without an engine."""
    from runtime.contract import CONTRACT_KEY, Contract, read_tflite_metadata, sidecar_path  # noqa: PLC0415

    if path is None:
        return []
    try:
        if path.suffix == ".tflite":
            meta = read_tflite_metadata(path.read_bytes())
            if CONTRACT_KEY in meta:
                return Contract.from_json(meta[CONTRACT_KEY]).labels
        side = sidecar_path(path)
        if side.is_file() and side != path:
            return Contract.from_json(side.read_bytes()).labels
    except (OSError, ValueError):
        pass
    return []


def _run_config(folder: Path) -> dict[str, Any] | None:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignoring unreadable %s (%s)", path, err)
        return None


def _variant(path: Path, kind: str, config: dict[str, Any] | None) -> Variant:
    fmt = MODEL_SUFFIXES[path.suffix.lower()]
    return Variant(path.name, path, fmt, kind, guess_precision(path), config)


def discover(path: str | Path, kind: str = "model") -> list[Variant]:
    """The model variants under ``path`` (run dir, models dir or file); UserError if none."""
    path = Path(path).expanduser()
    flag = "--extra" if kind == "extra" else "--model"
    if not path.exists():
        raise UserError(
            f"{flag} {path} not found; pass a run directory, a folder of .tflite/.onnx "
            "files or one model file"
        )
    if not path.is_file() and not path.is_dir():  # iterdir() was a NotADirectoryError traceback
        raise UserError(
            f"{flag} {path} is not a file or folder (a FIFO, socket or device); pass a model "
            "file or a folder of them"
        )
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise UserError(f"{flag} {path} is not a .tflite, .onnx or .keras file")
        return [_variant(path, kind, _run_config(path.parent))]
    config = _run_config(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    if not any(p.suffix == ".keras" for p in files):  # a models folder: exported files only
        files = [p for p in files if p.suffix != ".keras"]
    if not files:
        raise UserError(
            f"nothing to benchmark in {path}: no model.keras, *.tflite or *.onnx; "
            "export models first "
            "(python -m export --model RUN, or `make models` for the defaults) or pass a folder of "
            "exported models"
        )
    order = {"keras": 0, "tflite": 1, "onnx": 2}
    prec = {p: i for i, p in enumerate(PRECISIONS)}
    variants = [_variant(p, kind, config) for p in files]
    return sorted(variants, key=lambda v: (order[v.format], prec.get(v.precision or "", 9), v.name))


def baselines(names: str, labels_text: str) -> list[Variant]:
    """Haar baselines: ``auto`` picks by label words (cat / face), ``none``, or a list."""
    if names == "none":
        return []
    if names == "auto":
        text = labels_text.lower()
        chosen = [
            n
            for n, words in (
                ("haar_cat", ("cat",)),
                ("haar_face", ("face", "mask", "selfie", "person")),
            )
            if any(w in text for w in words)
        ]
        chosen = chosen or list(HAAR_CASCADES)
    else:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in HAAR_CASCADES]
        if unknown:
            raise UserError(
                f"unknown baseline {unknown[0]!r}; valid: auto, none, {', '.join(HAAR_CASCADES)}"
            )
    return [Variant(n, None, "haar", "baseline") for n in chosen]


def ort_providers() -> tuple[list[str], str | None]:
    """(providers to plan, reason when onnxruntime itself is missing)."""
    if not importable("onnxruntime"):
        return [], "onnxruntime is not installed (pip install onnxruntime)"
    import onnxruntime as ort  # noqa: PLC0415

    available = [p for p in ort.get_available_providers() if p not in _IGNORED_PROVIDERS]
    return list(ORT_PROVIDERS) + [p for p in available if p not in ORT_PROVIDERS], None


def backends_for(fmt: str, wanted: set[str] | None) -> list[tuple[str, str, str | None, str]]:
    """(runner, backend, provider, device) combinations for one format."""
    from runtime import BACKENDS  # noqa: PLC0415

    out: list[tuple[str, str, str | None, str]] = []
    if fmt == "tflite":
        for name, entry in BACKENDS.items():
            # tf.lite.Interpreter is deprecated and heavy: only when asked for by name.
            if entry.format == "tflite" and (name != "tensorflow" or (wanted and name in wanted)):
                out.append(("runtime", name, None, "cpu"))
    elif fmt == "onnx":
        providers, _ = ort_providers()
        for provider in providers or ["CPUExecutionProvider"]:
            device = "gpu" if provider in GPU_PROVIDERS else "cpu"
            out.append(("runtime", "onnxruntime", provider, device))
    elif fmt == "keras":
        out += [("keras", "keras", "CPU", "cpu"), ("keras", "keras", "GPU", "gpu")]
    elif fmt == "haar":
        out.append(("haar", "opencv", None, "cpu"))
    if wanted:
        out = [
            o
            for o in out
            if o[1] in wanted or (o[2] or "").replace("ExecutionProvider", "").lower() in wanted
        ]
    return out


def backend_names(installed: bool = False) -> list[str]:
    """Every ``--backends`` name: the runtime's engines (``runtime.BACKENDS``), the Keras and
    OpenCV runners, and ONNX Runtime providers by short name (``installed``: also those of
    this onnxruntime build, e.g. ``rocm``)."""
    from runtime import BACKENDS  # noqa: PLC0415
    from runtime.backends import PROVIDERS  # noqa: PLC0415

    names = [*BACKENDS, "keras", "opencv", *PROVIDERS]
    if installed:
        names += [p.replace("ExecutionProvider", "").lower() for p in ort_providers()[0]]
    return list(dict.fromkeys(names))


def installed_reason(
    runner: str, backend: str, provider: str | None, device: str, has_gpu: bool
) -> str | None:
    """Why a combination cannot run here (checked without importing heavy engines), else None."""
    from runtime import BACKENDS  # noqa: PLC0415

    if runner == "runtime":
        module = BACKENDS[backend].module.split(".")[0]
        if not importable(module):
            package = BACKENDS[backend].package
            return f"{package} is not installed (pip install {package})"
        if provider:
            providers, missing = ort_providers()
            if missing:
                return missing
            import onnxruntime as ort  # noqa: PLC0415

            if provider not in ort.get_available_providers():
                gpu = " and an NVIDIA GPU" if provider in GPU_PROVIDERS else ""
                return f"{provider} is not in this onnxruntime build (needs onnxruntime-gpu{gpu})"
    if runner == "keras":
        if not importable("tensorflow"):
            return "TensorFlow is not installed (pip install -e .[train])"
        if device == "gpu" and not has_gpu:
            return "no NVIDIA GPU on this machine (nvidia-smi found none)"
    if device == "gpu" and not has_gpu and runner == "runtime":
        return "no NVIDIA GPU on this machine (nvidia-smi found none)"
    return None
