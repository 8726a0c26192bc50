"""The run directory (``--out``): checked before any work, cleared only of the run's own files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.atomic import TMP_MARK, write_text
from runtime.errors import UserError
from train.callbacks import RESUME_DIR, STATE_FILE
from train.config import CONFIG_FILE, MODEL_FILE, RunConfig

METRICS_FILE = "metrics.json"
PLOT_FILE = "predictions.png"
PROBLEMS_FILE = "data-problems.txt"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, METRICS_FILE, PLOT_FILE, "history.json", "history.csv",
             PROBLEMS_FILE)


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
    if run_dir.is_dir() and not is_run(run_dir):
        others = sorted(p.name for p in run_dir.iterdir() if TMP_MARK not in p.name)
        if others:
            more = ", ..." if len(others) > 3 else ""
            raise UserError(f"--out {run_dir} already holds files that are not an edgeloc run "
                            f"({', '.join(others[:3])}{more}); pass a new or empty folder")


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

