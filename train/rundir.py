"""The run directory (``--out``): checked before any work, cleared only of the run's own files."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from runtime.atomic import TMP_MARK, write_text
from runtime.errors import UserError
from runtime.integrity import sha256_file
from train.callbacks import RESUME_DIR, STATE_FILE
from train.config import CONFIG_FILE, MODEL_FILE, RunConfig

METRICS_FILE = "metrics.json"
PLOT_FILE = "predictions.png"
PROBLEMS_FILE = "data-problems.txt"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, METRICS_FILE, PLOT_FILE, "history.json", "history.csv",
             PROBLEMS_FILE)
WEIGHTS_NAME = re.compile(r"epoch-\d{4,}\.weights\.h5")  # ResumeState's names, in resume/
_FIX = "pass --overwrite to start the run again, or another --out"


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds an edgeloc run (its config.json names a model and training)."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and {"model", "training"} <= config.keys()


def check_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Refuse an ``--out`` whose files would destroy something: a file, a folder of other
    files, a data folder, or the run ``--init`` starts from (``--overwrite`` clears it)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file; pass a folder for the run (created if missing)")
    real = run_dir.resolve()
    if config.training.init:
        init = Path(config.training.init).expanduser().resolve()
        if init == real or real in init.parents:
            raise UserError(f"--init {config.training.init} is inside --out {run_dir}: the run "
                            "would replace the model it starts from; pass another --out")
    for given in config.data.data_dirs:
        data = Path(given).expanduser().resolve()
        if real in (data, data.parent if data.is_file() else data):
            raise UserError(f"--out {run_dir} is the folder of --data-dir {given}: the run's files "
                            f"would land among the data; pass another folder (e.g. {run_dir / 'run'})")
    resume = run_dir / RESUME_DIR
    if resume.exists() and not resume.is_dir():
        raise UserError(f"{resume} is a file where the run keeps its resume state; move it away, "
                        "or pass another --out")
    for path in [*(run_dir / n for n in RUN_FILES), resume / STATE_FILE]:
        if path.exists() and not path.is_file():  # os.replace (and --overwrite) cannot go there
            raise UserError(f"{path} is not a regular file (a folder, FIFO or device) where the "
                            "run keeps its own; move it away, or pass another --out")
    # A run whose config.json is damaged is still a run: resuming names the file, and
    # --overwrite clears it.
    if run_dir.is_dir() and not is_run(run_dir) and not (resume / STATE_FILE).is_file():
        others = sorted(p.name for p in run_dir.iterdir() if TMP_MARK not in p.name)
        if others:
            more = ", ..." if len(others) > 3 else ""
            raise UserError(f"--out {run_dir} already holds files that are not an edgeloc run "
                            f"({', '.join(others[:3])}{more}); pass a new or empty folder")


def read_state(run_dir: Path) -> dict | None:
    """The resume state of a run directory (None: nothing to resume). A damaged one (it is
    written atomically, so only something else breaks it), or a trained model without one,
    is a UserError naming the file: training from scratch would replace that model."""
    resume = Path(run_dir) / RESUME_DIR
    path = resume / STATE_FILE
    if not os.path.lexists(path):
        if os.path.lexists(run_dir / MODEL_FILE):  # the model is saved only after a state
            raise UserError(f"{run_dir} holds a trained model but no resume state {path}; {_FIX}")
        return None
    state = None
    if path.is_symlink() or not path.is_file():
        why = "not the regular file the run wrote: a link, a folder or a FIFO"
    else:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            why = _state_problem(state)
        except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError: a ValueError
            why = type(err).__name__
    if why:
        raise UserError(f"the resume state {path} is damaged ({why}); {_FIX}")
    return state


def _state_problem(state: Any) -> str | None:
    """What makes a parsed resume state unusable (None: nothing)."""
    if not isinstance(state, dict):
        return "not a JSON object"
    epoch = state.get("epoch")
    if type(epoch) is not int or epoch < 0:
        return f"epoch {epoch!r} is not a count of finished epochs"
    weights = state.get("weights")
    if epoch and not (isinstance(weights, str) and WEIGHTS_NAME.fullmatch(weights)):
        return f"weights {weights!r} is not an epoch-NNNN.weights.h5 of {RESUME_DIR}/"
    seconds = state.get("train_seconds", 0.0)
    if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
        return f"train_seconds {seconds!r} is not a duration"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        return "history is not a list of epoch rows"
    for key in ("checkpoint", "early_stopping"):
        part = state.get(key) or {}
        if not isinstance(part, dict):
            return f"{key} is not an object of numbers"
        numbers = [v for k, v in part.items() if k != "sha256"]
        if not all(v is None or type(v) in (int, float) for v in numbers):
            return f"{key} is not an object of numbers"
    for key in ("mixed_precision", "stopped_early", "finished"):
        if not isinstance(state.get(key, False), bool):
            return f"{key} {state[key]!r} is not true or false"
    return None


def check_resume_file(path: Path, sha256: str | None) -> Path:
    """``path`` (resume weights or the best model), refused unless it is a regular file with
    the SHA-256 the resume state recorded (None: a run from before the digests)."""
    if not path.is_file():
        raise UserError(f"{path} is missing or not a regular file; {_FIX}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise UserError(f"{path} is not the file this run saved (its SHA-256 differs from the "
                        f"resume state's: damaged, or another run's); {_FIX}")
    return path


def clear_run(run_dir: Path) -> None:
    """Remove a run's own files (``--overwrite``); anything else in the folder stays."""
    for path in [run_dir / n for n in RUN_FILES] + list(run_dir.glob("evaluation-*.json")):
        path.unlink(missing_ok=True)
    resume = run_dir / RESUME_DIR
    if resume.is_dir():
        for path in [resume / STATE_FILE, *resume.glob("epoch-*.weights.h5")]:
            path.unlink(missing_ok=True)
        if not any(resume.iterdir()):
            resume.rmdir()


def data_problems(source: Any) -> list[str]:
    """The skipped entries of a run's file data (every source of a mix; pasted samples'
    base): the full list behind the log's first ten."""
    found: list[str] = []
    stack = [source]
    while stack:
        s = stack.pop(0)
        found += [p for p in getattr(s, "problems", None) or [] if p not in found]
        stack += [x for x in (getattr(s, "base", None), *getattr(s, "sources", ())) if x is not None]
    return found


def write_problems(run_dir: Path, problems: list[str]) -> Path | None:
    """``data-problems.txt`` with every skipped entry (None, and no file, when there is none)."""
    path = run_dir / PROBLEMS_FILE
    if not problems:
        path.unlink(missing_ok=True)
        return None
    return write_text(path, "".join(f"{p}\n" for p in problems))

