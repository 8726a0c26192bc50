"""Where an export writes, checked before any work: a writable folder, never an input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export._load import LoadedModel
from runtime.atomic import refuse_overwrite, temp_name
from runtime.errors import UserError
from runtime.sources import is_image_file


def target(loaded: LoadedModel, out: str | Path | None, fmt: str, precision: str) -> Path:
    """The output file: ``out`` or RUN/model_<precision>.<fmt>; checked to be writable and
    not one of the run's own files."""
    path = Path(out).expanduser() if out else loaded.default_out(fmt, precision)
    check_writable(path, fmt)
    refuse_overwrite(path, loaded.input_files())
    if path.is_file() and is_image_file(path):  # a photo of a CSV's data set, say
        raise UserError(f"--out {path} is an image file; writing a model there would destroy "
                        f"it: pass a new .{fmt} path")
    if path.suffix.lower() != f".{fmt}":  # the runtime picks its engine by the suffix
        raise UserError(f"--out {path}: a {'TFLite' if fmt == 'tflite' else 'ONNX'} model file "
                        f"must end in .{fmt}; pass {path.with_suffix(f'.{fmt}').name}")
    return path


def check_data(out: Path, *sets: Any) -> None:
    """``out`` must not be a file of the calibration or held-out data (``sets``: None or
    objects whose ``info`` names their ``data_dir`` or, for a folder of images, ``source``)."""
    folders = []
    for s in sets:
        info = getattr(s, "info", None) or {}
        for value in (info.get("data_dir"), info.get("source") if info.get("kind") else None):
            if value and Path(str(value)).expanduser().exists():
                folders.append(Path(str(value)).expanduser())
    refuse_overwrite(out, [f for f in folders if f.is_file()], folders=folders)


def check_writable(out: Path, fmt: str = "tflite") -> None:
    """Fail early with advice when the output folder cannot take a new file."""
    folder = out.parent
    try:
        is_dir, folder_is_dir, folder_exists = out.is_dir(), folder.is_dir(), folder.exists()
    except OSError as err:  # a name too long for the file system, a folder we may not enter
        raise UserError(f"cannot use output path {out} ({err.strerror}); pass another --out "
                        f"FILE.{fmt}") from None
    if is_dir:
        raise UserError(f"output path {out} is a directory; pass --out FILE.{fmt}")
    if not folder_is_dir:
        what = "is a file, not a folder" if folder_exists else "does not exist"
        raise UserError(f"output folder {folder} {what}; create it or pass --out elsewhere")
    probe = temp_name(out)  # named like every temporary file: a killed run's is cleaned later
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"output folder {folder} is not writable ({err.strerror}); "
            "pass --out to a writable folder"
        ) from None


__all__ = ["check_data", "check_writable", "target"]

