"""The export formats, looked up by name, and the loop that exports one model to several.

Each format is one module behind the same small signature,
``export_<format>(model, out, *, quantize, io, per_channel, calib, verify[, <its options>])``;
``FORMATS`` maps a name to it. A new entry shows up in the CLIs' ``--formats`` and
``--quantize`` help and checks the day it is added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export._load import LoadedModel, load_model
from export.calib import calibration_for
from export.onnx import export_onnx
from export.options import (
    ONNX_QUANTIZE,
    PRECISIONS,
    CalibrationOptions,
    OnnxOptions,
    VerifyOptions,
    check_choice,
)
from export.quant import TFLITE_QUANTIZE
from export.tflite import export_tflite
from export.verify import ExportResult, Holdout, VerificationFailed, holdout_set
from runtime.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        label: its name in messages (``TFLite``).
        quantize: the ``--quantize`` values it accepts.
        export: the exporter function.
        options: the keyword of its own options object (``onnx``), or None.
    """

    label: str
    quantize: tuple[str, ...]
    export: Callable[..., ExportResult]
    options: str | None = None


FORMATS: dict[str, Format] = {
    "tflite": Format("TFLite", TFLITE_QUANTIZE, export_tflite),
    "onnx": Format("ONNX", ONNX_QUANTIZE, export_onnx, options="onnx"),
}


def get_format(name: str) -> Format:
    """The registry entry of a format; UserError listing the valid names."""
    return FORMATS[check_choice(name, FORMATS, "format")]


def all_quantize() -> list[str]:
    """Every ``--quantize`` value of any format, in registry order."""
    return list(dict.fromkeys(q for f in FORMATS.values() for q in f.quantize))


def _items(value: str | Sequence[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v.strip()]


def jobs_for(formats: str | Sequence[str], quantize: str | Sequence[str]) -> list[tuple[str, str]]:
    """(format, quantize) pairs; precisions a format lacks (fp16/dynamic for ONNX) are skipped."""
    fmts = list(dict.fromkeys(_items(formats)))  # a name given twice is exported once
    if not fmts:
        raise UserError(f"--formats is empty; pass a comma list of {', '.join(FORMATS)}")
    for f in fmts:
        get_format(f)
    precisions = list(dict.fromkeys(_items(quantize)))
    if not precisions:
        raise UserError(f"--quantize is empty; pass a comma list of {', '.join(all_quantize())}")
    valid = all_quantize()
    for q in precisions:
        check_choice(q, valid, "--quantize")
    jobs = [(f, q) for f in fmts for q in precisions if q in FORMATS[f].quantize]
    if not jobs:
        takes = "; ".join(f"{FORMATS[f].label} takes {', '.join(FORMATS[f].quantize)}"
                          for f in fmts)
        raise UserError(f"no format supports --quantize {','.join(precisions)}: {takes}")
    return jobs


@dataclass
class Batch:
    """What ``export_all`` produced.

    Attributes:
        loaded: the model that was exported.
        holdout: the shared held-out set (None without verification).
        results: one per job, in job order; a failed verification's result has ``ok`` False
            and no file.
    """

    loaded: LoadedModel
    holdout: Holdout | None
    results: list[ExportResult] = field(default_factory=list)


def export_all(
    model: Any,
    jobs: list[tuple[str, str]],
    *,
    out: str | Path | None = None,
    out_dir: str | Path | None = None,
    stem: str = "model",
    io: str = "uint8",
    per_channel: bool | None = None,
    calib: CalibrationOptions = CalibrationOptions(),
    verify: VerifyOptions | None = VerifyOptions(),
    onnx: OnnxOptions = OnnxOptions(),
    on_job: Callable[[str, str], None] | None = None,
) -> Batch:
    """Export one model to several (format, quantize) jobs, sharing its calibration and
    held-out sets. Files go to ``out`` (one job), ``out_dir/<stem>_<precision>.<format>``,
    or next to the model."""
    for fmt, quantize in jobs:  # names first: before the slow model load
        entry = get_format(fmt)
        check_choice(quantize, entry.quantize, f"{entry.label} --quantize")
    if out and len(jobs) > 1:
        raise UserError("--out names one file; with several exports pass --out-dir FOLDER")
    folder = Path(out_dir).expanduser() if out_dir is not None else None
    try:
        missing = folder is not None and not folder.is_dir()
    except OSError as err:  # a name too long for the file system
        raise UserError(
            f"cannot use --out-dir {folder} ({err.strerror}); pass another folder"
        ) from None
    if missing:
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UserError(f"output folder {folder} {what}; create it or pass another --out-dir")
    loaded = load_model(model)
    calibration = calibration_for(loaded, calib) if any(q == "int8" for _, q in jobs) else None
    batch = Batch(loaded, holdout_set(loaded, verify))
    own_options = {"onnx": onnx}
    for fmt, quantize in jobs:
        entry = FORMATS[fmt]
        target = out
        if folder is not None:
            target = folder / f"{stem}_{PRECISIONS[quantize]}.{fmt}"
        if on_job is not None:
            on_job(fmt, quantize)
        extra = {entry.options: own_options[entry.options]} if entry.options else {}
        try:
            result = entry.export(
                loaded,
                target,
                quantize=quantize,
                io=io,
                per_channel=per_channel,
                calib=calibration if calibration is not None else calib,
                verify=batch.holdout,
                **extra,
            )
        except VerificationFailed as failed:
            result = failed.args[0]
        batch.results.append(result)
    return batch


__all__ = ["FORMATS", "Batch", "Format", "export_all", "get_format", "jobs_for"]
