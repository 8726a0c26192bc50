"""Training with Keras ``fit``: atomic checkpoints, resume, early stopping, rich progress.

Run directory layout (written by ``train``):
    model.keras     the best epoch so far by the validation monitor (mean IoU by default),
                    rewritten atomically (temp file + os.replace) after each improving epoch;
                    with ``--checkpoint last``, the last finished epoch
    config.json     the resolved RunConfig
    history.json/.csv  one row per finished epoch (losses, metrics, learning rate, seconds)
    metrics.json    summary: best epoch, training seconds, test-split evaluation
    predictions.png test images with true (green) and predicted (red) boxes
    resume/         state.json + the last epoch's weights and optimizer state; rerunning the
                    same command continues after the last finished epoch
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from train.config import MODEL_FILE, RunConfig, load_config, save_config, write_json_atomic
from runtime.errors import UserError
from train.losses import box_loss, check_loss, score_loss
from train.metrics import box_metrics, score_metrics
from train.model import build_model

log = logging.getLogger(__name__)

RESUME_DIR = "resume"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.json"
PLOT_FILE = "predictions.png"


# ----------------------------------------------------------------------------- callbacks
class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` after each epoch that improves ``monitor`` (or after every
    epoch with ``keep="last"``), through a temporary file and os.replace."""

    def __init__(self, path: Path, monitor: str, mode: str = "max", best: float | None = None,
                 keep: str = "best"):
        super().__init__()
        if keep not in ("best", "last"):
            raise ValueError(f"unknown checkpoint choice {keep!r}; valid: best, last")
        self.path, self.monitor, self.mode, self.keep = Path(path), monitor, mode, keep
        self.best = best
        self.best_epoch: int | None = None

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
        save_model_atomic(self.model, self.path)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """model.save to a temporary .keras file beside ``path``, then os.replace."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        tmp = resume / f"tmp-{name}"
        self.model.save_weights(tmp)
        os.replace(tmp, resume / name)
        self.state.update({
            "epoch": epoch + 1, "weights": name, "history": self.history,
            "train_seconds": round(self.state.get("train_seconds", 0.0) + seconds, 2),
            "checkpoint": {"best": self.checkpoint.best, "best_epoch": self.checkpoint.best_epoch},
            "early_stopping": self.stopper.state() if self.stopper else None,
        })
        write_json_atomic(resume / STATE_FILE, self.state)
        for old in resume.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        write_history(self.run_dir, self.history)


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


# ----------------------------------------------------------------------------- training
@dataclass
class Prepared:
    """Sources and datasets of a run, checked before anything is written."""

    train_source: Any
    val_source: Any
    test_source: Any
    train_ds: Any
    val_ds: Any
    steps_per_epoch: int


def split_source(config: RunConfig, split: str) -> Any:
    """The data of ``split`` for this config (a mix for several sources, pasted objects on the
    train split of file sources when ``data.paste`` > 0); empty sources are a ValueError."""
    from data.catalog import open_source

    d = config.data
    size = {"train": d.train_size, "val": d.val_size, "test": d.test_size}[split]
    dirs = [d.data_dir] if isinstance(d.data_dir, str) else list(d.data_dir or [])
    for folder in dirs:
        if not Path(folder).expanduser().exists():
            raise FileNotFoundError(f"data dir {folder} does not exist; pass --data-dir PATH")
    paste = {"p": d.paste, **d.paste_options} if d.paste else None
    source = open_source(d.source, split=split, data_dir=dirs or None, paste=paste, size=size,
                         seed=d.seed, negatives=d.negatives, multi=d.multi,
                         val_fraction=d.val_fraction)
    if len(source) == 0:
        raise ValueError(f"the {split} split of {d.describe()} is empty; check --data-dir "
                         "and the annotation files")
    return source


def prepare(config: RunConfig) -> Prepared:
    """Open sources and datasets and fill in the labels; raises ValueError on bad input."""
    from data.augment import get_augment
    from train.pipeline import make_dataset

    check_loss(config.training.loss)
    augment = get_augment(config.data.augment, config.data.augment_overrides)
    train_src = split_source(config, "train")
    val_src, test_src = split_source(config, "val"), split_source(config, "test")
    config.model.labels = tuple(train_src.labels)
    t, m = config.training, config.model
    steps = t.steps_per_epoch or max(1, math.ceil(len(train_src) / t.batch_size))
    common = {"image_size": m.image_size, "batch_size": t.batch_size, "box_format": m.box_format}
    train_ds = make_dataset(train_src, **common, augment=augment if augment else False,
                            shuffle=True, repeat=True, seed=config.data.seed)
    val_ds = make_dataset(val_src, **common)
    return Prepared(train_src, val_src, test_src, train_ds, val_ds, steps)


def compile_model(model: keras.Model, config: RunConfig) -> keras.Model:
    """Attach optimizer (Adam + staircase exponential decay), losses and metrics."""
    o, t, fmt = config.optimizer, config.training, config.model.box_format
    lr = keras.optimizers.schedules.ExponentialDecay(
        o.learning_rate, decay_steps=o.decay_steps, decay_rate=o.decay_rate, staircase=o.staircase)
    model.compile(
        optimizer=keras.optimizers.Adam(lr, clipnorm=o.clipnorm),
        loss={"box": box_loss(t.loss, fmt), "score": score_loss()},
        loss_weights={"box": 1.0, "score": t.score_weight},
        metrics={"box": box_metrics(fmt), "score": score_metrics()},
        jit_compile=False,  # XLA compile time outweighs its gain for small CPU runs
    )
    return model


def read_state(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RESUME_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_same_run(run_dir: Path, config: RunConfig) -> None:
    """Refuse to resume a run directory that holds a different configuration."""
    old = load_config(run_dir)
    new = config.to_dict()
    for cfg in (old, new):
        cfg.get("training", {}).pop("epochs", None)  # more epochs may extend a run
        cfg.pop("preset", None)
    diffs = [f"{s}.{k}" for s in new if isinstance(new[s], dict)
             for k in new[s] if old.get(s, {}).get(k) != new[s][k]]
    if diffs:
        raise ValueError(f"{run_dir} holds a run with a different config ({', '.join(diffs)}); "
                         "pass another --out, or --overwrite to start again")


def train(config: RunConfig, run_dir: str | Path, *, console: Console | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run into ``run_dir``; returns the summary written to metrics.json."""
    from train.evaluate import evaluate_model
    from train.plots import save_prediction_grid

    console = console or Console()
    run_dir = Path(run_dir).expanduser()
    keras.utils.set_random_seed(config.data.seed)
    try:  # user errors (names, paths, empty data, no ImageNet download) surface here
        prep = prepare(config)
        model = compile_model(build_model(config.model), config)
    except (ValueError, RuntimeError, OSError) as err:
        raise UserError(str(err)) from None
    if overwrite:
        _clear_run(run_dir)
    state = read_state(run_dir)
    if state is not None:
        try:
            check_same_run(run_dir, config)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
        done = state.get("stopped_early") or state["epoch"] >= config.training.epochs
        if done and state.get("finished") and (run_dir / METRICS_FILE).is_file():
            console.print(f"{run_dir} already holds a finished run ({state['epoch']} epochs); "
                          "pass --overwrite to train again")
            return json.loads((run_dir / METRICS_FILE).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(run_dir)  # left by a process killed while writing
    save_config(config, run_dir)

    state = state or {"epoch": 0, "train_seconds": 0.0}
    state["finished"] = False
    epochs = state["epoch"] if state.get("stopped_early") else config.training.epochs
    history: list[dict] = list(state.get("history", []))[: state["epoch"]]
    if state["epoch"]:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(run_dir / RESUME_DIR / state["weights"])
        console.print(f"resuming {run_dir} after epoch {state['epoch']}")
    t = config.training
    ckpt_state = state.get("checkpoint") or {}
    checkpoint = AtomicCheckpoint(run_dir / MODEL_FILE, t.monitor, best=ckpt_state.get("best"),
                                  keep=t.checkpoint)
    checkpoint.best_epoch = ckpt_state.get("best_epoch")
    stopper = (ResumableEarlyStopping(monitor=t.monitor, mode="max", patience=t.patience,
                                      state=state.get("early_stopping")) if t.patience else None)
    saver = ResumeState(run_dir, history, state, checkpoint, stopper)
    bar = RichProgress(t.epochs, prep.steps_per_epoch, console, live=progress)
    cbs = [checkpoint, *([stopper] if stopper else []), saver, bar, *callbacks]
    try:
        model.fit(prep.train_ds, validation_data=prep.val_ds, epochs=epochs,
                  initial_epoch=state["epoch"], steps_per_epoch=prep.steps_per_epoch,
                  callbacks=cbs, verbose=0, shuffle=False)  # the dataset shuffles itself
    finally:
        bar.stop()
    stopped_early = bool(state.get("stopped_early") or (stopper and stopper.stopped_epoch > 0))
    state["stopped_early"] = stopped_early
    write_json_atomic(run_dir / RESUME_DIR / STATE_FILE, state)

    best = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    report = evaluate_model(best, prep.test_source, image_size=config.model.image_size,
                            box_format=config.model.box_format, labels=config.model.labels)
    images = [prep.test_source[i] for i in range(min(16, len(prep.test_source)))]
    save_prediction_grid(best, images, config, run_dir / PLOT_FILE)
    summary = {
        "epochs_run": state["epoch"], "checkpoint": t.checkpoint, "best_epoch": checkpoint.best_epoch,
        "monitor": t.monitor, "best_monitor": checkpoint.best, "stopped_early": stopped_early,
        "train_seconds": state["train_seconds"], "steps_per_epoch": prep.steps_per_epoch,
        "last_epoch": history[-1] if history else None,
        "test": {k: v for k, v in report.items() if k != "iou"},
    }
    write_json_atomic(run_dir / METRICS_FILE, summary)
    state["finished"] = True  # only now: a crash during evaluation reruns the evaluation
    write_json_atomic(run_dir / RESUME_DIR / STATE_FILE, state)
    return summary


def write_history(run_dir: Path, history: list[dict]) -> None:
    """history.json and history.csv, each written atomically."""
    write_json_atomic(run_dir / "history.json", history)
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    tmp = run_dir / ".history.csv.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, run_dir / "history.csv")


def _remove_temp_files(run_dir: Path) -> None:
    for pattern in (".tmp-*", ".*.tmp", f"{RESUME_DIR}/tmp-*"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def _clear_run(run_dir: Path) -> None:
    names = [MODEL_FILE, "config.json", METRICS_FILE, PLOT_FILE, "history.json", "history.csv"]
    for path in [run_dir / n for n in names] + list(run_dir.glob("evaluation-*.json")):
        path.unlink(missing_ok=True)
    resume = run_dir / RESUME_DIR
    if resume.is_dir():
        for f in resume.iterdir():
            f.unlink()
        resume.rmdir()


def _num(value: Any) -> Any:
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return value


__all__ = ["AtomicCheckpoint", "ResumableEarlyStopping", "ResumeState", "RichProgress",
           "compile_model", "prepare", "train"]
