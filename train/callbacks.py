"""Keras callbacks of a training run: atomic checkpoints, resumable early stopping, the resume
state written after every epoch, and a rich progress display."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any, Sequence

import keras
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from runtime import atomic
from runtime.integrity import sha256_file  # the resume state records the files' digests
from runtime._cli import raise_if_stopped
from train.config import write_json_atomic

RESUME_DIR = "resume"
STATE_FILE = "state.json"


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` after each epoch that improves ``monitor`` (or after every
    epoch with ``keep="last"``), through a temporary file and os.replace.

    With ``defer=True`` the save waits for ``flush()``: training calls it after the resume
    state is on disk, so a kill between the two never loses or re-runs a finished epoch
    (a resumed run re-saves the model of a recorded best epoch from its weights).
    """

    def __init__(self, path: Path, monitor: str, mode: str = "max", best: float | None = None,
                 keep: str = "best", defer: bool = False):
        super().__init__()
        if keep not in ("best", "last"):
            raise ValueError(f"unknown checkpoint choice {keep!r}; valid: best, last")
        self.path, self.monitor, self.mode, self.keep = Path(path), monitor, mode, keep
        self.best, self.defer, self.pending = best, defer, False
        self.best_epoch: int | None = None
        self.sha256: str | None = None  # of the file last saved: the resume state records it

    def _better(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:  # no validation: keep the last epoch
            value = float("nan")
        elif self.keep == "best" and not self._better(float(value)):
            return
        self.best, self.best_epoch = float(value), epoch + 1
        self.pending = True
        if not self.defer:
            self.flush()

    def flush(self) -> None:
        """Write the pending model file (a no-op when the last epoch did not improve)."""
        if self.pending:
            save_model_atomic(self.model, self.path)
            self.sha256 = sha256_file(self.path)
            self.pending = False


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """model.save to a temporary .keras file beside ``path``, then os.replace.

    A mixed-precision model is saved as its float32 twin (same weights), so every model
    file and export keeps the float32 contract.
    """
    from train.distribute import float32_copy

    with atomic.staged(path) as tmp:
        float32_copy(model).save(tmp)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters survive a restart (restored from the resume state)."""

    def __init__(self, *args: Any, state: dict | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._restored = state or {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self._restored:
            self.wait = int(self._restored.get("wait", 0))
            if self._restored.get("best") is not None:
                self.best = float(self._restored["best"])
            self.best_epoch = int(self._restored.get("best_epoch", 0))

    def state(self) -> dict:
        return {"wait": int(self.wait), "best": _num(self.best), "best_epoch": int(self.best_epoch)}


class ResumeState(keras.callbacks.Callback):
    """After every epoch: weights + optimizer state, history and callback state, atomically.

    The weights go to a new ``epoch-NNNN.weights.h5``; ``state.json`` is replaced only
    after that file is complete, so a crash at any moment leaves a consistent pair.
    """

    def __init__(self, run_dir: Path, history: list[dict], state: dict,
                 checkpoint: AtomicCheckpoint, stopper: ResumableEarlyStopping | None):
        super().__init__()
        self.run_dir, self.history, self.state = Path(run_dir), history, state
        self.checkpoint, self.stopper = checkpoint, stopper
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._t0
        lr = self.model.optimizer.learning_rate
        row = {"epoch": epoch + 1, **{k: _num(v) for k, v in (logs or {}).items()},
               "lr": _num(lr), "seconds": round(seconds, 2)}
        self.history.append(row)
        resume = self.run_dir / RESUME_DIR
        resume.mkdir(exist_ok=True)
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        with atomic.staged(resume / name) as tmp:
            self.model.save_weights(tmp)
        self.state.update({
            "epoch": epoch + 1, "weights": name, "weights_sha256": sha256_file(resume / name),
            "history": self.history,
            "train_seconds": round(self.state.get("train_seconds", 0.0) + seconds, 2),
            # sha256: model.keras as on disk now (a pending save replaces it next, see
            # AtomicCheckpoint; a resumed run re-saves that one from the weights)
            "checkpoint": {"best": self.checkpoint.best, "best_epoch": self.checkpoint.best_epoch,
                           "sha256": self.checkpoint.sha256},
            "early_stopping": self.stopper.state() if self.stopper else None,
        })
        write_json_atomic(resume / STATE_FILE, self.state)
        self.checkpoint.flush()  # after the state: see AtomicCheckpoint
        for old in resume.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        write_history(self.run_dir, self.history)
        raise_if_stopped()  # a stop that TensorFlow swallowed ends the run here, all saved


class StopCheck(keras.callbacks.Callback):
    """Raise a recorded stop (SIGTERM, Ctrl-C) after the current training or validation
    step. A stop that arrives while TensorFlow's own Python code is on top of the stack is
    deferred (see ``runtime._cli.sigterm_stops``), and during ``fit`` that is nearly always:
    without this check it waited for a moment in Keras's own code, or the epoch's end,
    seconds to minutes later. Here, in plain Python between steps, raising is safe."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopped()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopped()


class RichProgress(keras.callbacks.Callback):
    """A rich progress display: one bar for the run, one for the current epoch.

    With ``live=False`` (logs, CI) only the one-line summary of each epoch is printed.
    """

    def __init__(self, epochs: int, steps: int, console: Console | None = None,
                 keys: Sequence[str] = ("loss", "box_iou", "score_acc"), live: bool = True):
        super().__init__()
        self.epochs, self.steps, self.keys, self.live = epochs, steps, tuple(keys), live
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console,
        )
        self._run = self._epoch = None
        self._t0 = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.live:
            self.progress.start()
        self._run = self.progress.add_task("run", total=self.epochs, info="",
                                           completed=self.params.get("initial_epoch", 0) or 0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.update(self._run, completed=epoch)
        self._t0 = time.perf_counter()
        self._epoch = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}",
                                             total=self.steps, info="")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        info = "  ".join(f"{k} {float(logs[k]):.4f}" for k in self.keys if logs and k in logs)
        self.progress.update(self._epoch, completed=batch + 1, info=info)

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._epoch is not None:
            self.progress.update(self._epoch, info="validating...")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        names = {"loss": "loss", "box_iou": "iou", "val_loss": "val_loss", "val_box_iou": "val_iou",
                 "val_box_corloc": "val_corloc", "val_score_acc": "val_acc"}
        parts = [f"{short} {float(logs[k]):.3f}" for k, short in names.items() if k in logs]
        self.progress.remove_task(self._epoch)
        self.progress.update(self._run, completed=epoch + 1)
        seconds = time.perf_counter() - self._t0
        self.progress.console.print(f"epoch {epoch + 1}/{self.epochs} ({seconds:.0f} s)  "
                                    + "  ".join(parts))

    def on_train_end(self, logs: dict | None = None) -> None:
        self.stop()

    def stop(self) -> None:
        self.progress.stop()


def write_history(run_dir: Path, history: list[dict]) -> None:
    """history.json and history.csv, each written atomically."""
    write_json_atomic(run_dir / "history.json", history)
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic.write_text(run_dir / "history.csv", buf.getvalue())


def _num(value: Any) -> Any:
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return value


__all__ = ["RESUME_DIR", "STATE_FILE", "AtomicCheckpoint", "ResumableEarlyStopping", "ResumeState",
           "RichProgress", "save_model_atomic", "write_history"]
