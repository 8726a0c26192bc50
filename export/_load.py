"""The model an export starts from: a trained run, read through ``train.config.load_run``."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import SUFFIXES
from runtime.contract import BOX_FORMATS, BOX_OUTPUT, NO_OBJECT, SCORE_OUTPUT
from runtime.errors import UserError
from runtime.integrity import sha256_file
from runtime.paths import stat_path

MODEL_SUFFIXES = SUFFIXES  # what an export writes: replacing one is allowed


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

    def default_out(self, fmt: str, precision: str) -> Path:
        """RUN/model_<precision>.<fmt>, next to the .keras file."""
        return self.out_dir / f"model_{precision}.{fmt}"

    def input_files(self) -> list[Path]:
        """The files of the run an export must never write over: the ``.keras`` file and
        every other file beside it except exported models (config, history, metrics, ...)."""
        if self.path is None:
            return []
        return [self.path] + sorted(
            p for p in self.out_dir.iterdir() if p.is_file() and p.suffix not in MODEL_SUFFIXES
        )


def load_model(model: Any) -> LoadedModel:
    """Accept a run directory, a ``.keras`` file or a keras.Model; check its outputs."""
    from train.config import config_from_model, load_run

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser()
        stat_path(path, "model", "pass --model RUN_DIR or a .keras file")  # also a name too long
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
        check_config(config, file.parent / "config.json")
        loaded = LoadedModel(keras_model, config, file, sha256_file(file))
    else:
        loaded = LoadedModel(model, config_from_model(model), None, None)
    check_outputs(loaded)
    return loaded


def check_config(config: Any, where: Path) -> None:
    """The parts of a run's config.json an export reads must have their types (a hand-edited
    or damaged file fails here, in one line, not deep in a converter or a data source)."""

    def bad(what: str, value: Any, want: str) -> UserError:
        shown = json.dumps(value)[:80]
        return UserError(f"{where}: {what} is {shown}, expected {want}; fix the file or retrain")

    def strings(value: Any) -> bool:
        items = [value] if isinstance(value, str) else value
        return isinstance(items, list) and all(isinstance(v, str) and v.strip() for v in items)

    if not isinstance(config, dict):
        raise bad("the file", config, "a JSON object with 'model' and 'data' sections")
    for section in ("model", "data"):
        if not isinstance(config.get(section, {}), dict):
            raise bad(f"'{section}'", config[section], "an object")
    spec, data = config.get("model", {}), config.get("data", {})
    labels = spec.get("labels", [NO_OBJECT, "object"])
    if (not isinstance(labels, list) or len(labels) < 2 or labels[0] != NO_OBJECT
            or not strings(labels) or len(set(labels)) != len(labels)):
        raise bad("model.labels", labels, f"a list of distinct names starting with {NO_OBJECT!r}")
    if spec.get("box_format", "xyxy") not in BOX_FORMATS:
        raise bad("model.box_format", spec["box_format"], " or ".join(BOX_FORMATS))
    if "source" in data and not (strings(data["source"]) or data["source"] in (None, [])):
        raise bad("data.source", data["source"], "a source name or a list of them")
    if data.get("data_dir") is not None and not strings(data["data_dir"]):
        raise bad("data.data_dir", data["data_dir"], "a path or a list of paths")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise bad("data.seed", seed, "an integer >= 0")
    fraction = data.get("val_fraction", 0.3)
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:  # also NaN
        raise bad("data.val_fraction", fraction, "a number between 0 and 1")


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
