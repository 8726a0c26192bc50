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

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
from rich.console import Console

from runtime import atomic
from runtime.errors import UserError
from train.callbacks import (RESUME_DIR, STATE_FILE, AtomicCheckpoint, ResumableEarlyStopping,
                             ResumeState, RichProgress, save_model_atomic)
from train.config import MODEL_FILE, RunConfig, load_config, save_config, write_json_atomic
from train.losses import box_loss, check_loss, score_loss
from train.metrics import box_metrics, score_metrics
from train.model import build_model
from train.splits import split_source
from train.warmstart import FreezeBackbone, warm_start

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PLOT_FILE = "predictions.png"


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
    t = config.training
    ckpt_state = state.get("checkpoint") or {}
    checkpoint = AtomicCheckpoint(run_dir / MODEL_FILE, t.monitor, best=ckpt_state.get("best"),
                                  keep=t.checkpoint, defer=True)
    checkpoint.set_model(model)
    checkpoint.best_epoch = ckpt_state.get("best_epoch")
    if state["epoch"]:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(run_dir / RESUME_DIR / state["weights"])
        console.print(f"resuming {run_dir} after epoch {state['epoch']}")
        # Killed after the state but before the model file: write the model file now.
        checkpoint.pending = checkpoint.best_epoch == state["epoch"]
        checkpoint.flush()
    elif t.init:
        try:
            for note in warm_start(model, config.model, t.init):
                console.print(note)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
    stopper = (ResumableEarlyStopping(monitor=t.monitor, mode="max", patience=t.patience,
                                      state=state.get("early_stopping")) if t.patience else None)
    saver = ResumeState(run_dir, history, state, checkpoint, stopper)
    bar = RichProgress(t.epochs, prep.steps_per_epoch, console, live=progress)
    freeze = [FreezeBackbone(t.freeze_backbone)] if t.freeze_backbone else []
    cbs = [*freeze, checkpoint, *([stopper] if stopper else []), saver, bar, *callbacks]
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


def _remove_temp_files(run_dir: Path) -> None:
    atomic.remove_leftovers(run_dir)
    atomic.remove_leftovers(run_dir / RESUME_DIR)
    for pattern in (".tmp-*", ".*.tmp", f"{RESUME_DIR}/tmp-*"):  # older versions' names
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


__all__ = ["AtomicCheckpoint", "compile_model", "prepare", "save_model_atomic", "split_source",
           "train"]
