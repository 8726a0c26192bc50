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

import contextlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
from rich.console import Console

from runtime import atomic
from runtime.errors import UserError
from train.callbacks import (RESUME_DIR, STATE_FILE, AtomicCheckpoint, ResumableEarlyStopping,
                             ResumeState, RichProgress, StopCheck, save_model_atomic)
from train.config import (MODEL_FILE, PLACEMENT_FIELDS, RunConfig, load_config, save_config,
                          write_json_atomic)
from train.losses import box_loss, check_loss, score_loss
from train.metrics import box_metrics, score_metrics
from train.model import build_model
from train.rundir import (METRICS_FILE, PLOT_FILE, check_resume_file, check_run_dir, clear_run,
                          data_problems, read_state, write_problems)
from train.splits import split_source
from train.warmstart import FreezeBackbone, warm_start

log = logging.getLogger(__name__)


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
    pipeline: str = "python"


def prepare(config: RunConfig, strategy: Any = None, on_gpu: bool = False) -> Prepared:
    """Open sources and datasets and fill in the labels; raises ValueError on bad input.

    The training set goes through the ``python`` or ``tf`` input pipeline
    (``training.input_pipeline``); under a multi-worker strategy each worker loads only
    its own share of it (``distribute_datasets_from_function``), batched per replica.
    """
    import tensorflow as tf

    from data.augment import get_augment
    from train.pipeline import make_dataset
    from train.tf_pipeline import cache_key, make_tf_dataset, resolve_pipeline

    check_loss(config.training.loss)
    augment = get_augment(config.data.augment, config.data.augment_overrides)
    train_src = split_source(config, "train")
    val_src, test_src = split_source(config, "val"), split_source(config, "test")
    config.model.labels = tuple(train_src.labels)
    t, m, d = config.training, config.model, config.data
    steps = t.steps_per_epoch or max(1, math.ceil(len(train_src) / t.batch_size))
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if t.batch_size % replicas:
        raise ValueError(f"--batch-size {t.batch_size} is the global batch and must split evenly "
                         f"over the {replicas} replicas; pass a multiple of {replicas}")
    pipeline = resolve_pipeline(t.input_pipeline, on_gpu, augment)
    common = {"image_size": m.image_size, "box_format": m.box_format}

    def train_dataset(batch: int, shard: tuple[int, int] | None = None) -> Any:
        options = {**common, "batch_size": batch, "augment": augment if augment else False,
                   "shuffle": True, "repeat": True, "seed": d.seed, "shard": shard}
        if pipeline == "tf":
            key = cache_key(d.source, d.data_dir, d.train_size, d.negatives, d.multi,
                            d.val_fraction, d.paste, d.paste_options, d.seed, "train")
            return make_tf_dataset(train_src, **options, cache_dir=d.cache_dir, cache_key=key)
        return make_dataset(train_src, **options)

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        train_ds = strategy.distribute_datasets_from_function(lambda ctx: train_dataset(
            ctx.get_per_replica_batch_size(t.batch_size),
            (ctx.num_input_pipelines, ctx.input_pipeline_id)))
    else:
        train_ds = train_dataset(t.batch_size)
    val_ds = make_dataset(val_src, **common, batch_size=t.batch_size)
    options = tf.data.Options()  # small: every worker reads it all and keeps its share
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return Prepared(train_src, val_src, test_src, train_ds, val_ds.with_options(options), steps,
                    pipeline)


def compile_model(model: keras.Model, config: RunConfig) -> keras.Model:
    """Attach optimizer (Adam + staircase exponential decay), losses and metrics."""
    o, t, fmt = config.optimizer, config.training, config.model.box_format
    lr = keras.optimizers.schedules.ExponentialDecay(
        o.learning_rate, decay_steps=o.decay_steps, decay_rate=o.decay_rate, staircase=o.staircase)
    if o.warmup_steps:
        lr = WarmUp(lr, o.warmup_steps)
    model.compile(
        optimizer=keras.optimizers.Adam(lr, clipnorm=o.clipnorm),
        loss={"box": box_loss(t.loss, fmt), "score": score_loss()},
        loss_weights={"box": 1.0, "score": t.score_weight},
        metrics={"box": box_metrics(fmt), "score": score_metrics()},
        jit_compile=False,  # XLA compile time outweighs its gain for small CPU runs
    )
    return model


@keras.saving.register_keras_serializable(package="edgeloc")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """The wrapped schedule's rate, ramped up linearly over the first ``steps`` steps."""

    def __init__(self, schedule: Any, steps: int):
        self.schedule, self.steps = schedule, int(steps)

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        rate = self.schedule(step)
        return keras.ops.where(step < self.steps, rate * (step + 1.0) / self.steps, rate)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "steps": self.steps}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmUp:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["steps"])


def check_same_run(run_dir: Path, config: RunConfig) -> None:
    """Refuse to resume a run directory that holds a different configuration."""
    from data.augment import get_augment

    old = load_config(run_dir)
    new = config.to_dict()
    for cfg in (old, new):
        cfg.get("training", {}).pop("epochs", None)  # more epochs may extend a run
        cfg.pop("preset", None)
        # Augmentation is compared as the settings it resolves to (camera with dim=0 is the
        # camera profile; a run from before the profiles stored True for basic).
        data = cfg.setdefault("data", {})
        aug = get_augment(data.get("augment", RunConfig().data.augment),
                          data.pop("augment_overrides", None))
        data["augment"] = None if aug is None else asdict(aug)
        for section, names in PLACEMENT_FIELDS.items():  # another machine may resume it
            for name in names:
                cfg.get(section, {}).pop(name, None)
    # A field added after the run started is compared as its default.
    default = RunConfig().to_dict()
    diffs = [f"{s}.{k}" for s in new if isinstance(new[s], dict)
             for k in new[s] if old.get(s, {}).get(k, default.get(s, {}).get(k)) != new[s][k]]
    if diffs:
        raise ValueError(f"{run_dir} holds a run with a different config ({', '.join(diffs)}); "
                         "pass another --out, or --overwrite to start again")


def train(config: RunConfig, run_dir: str | Path, *, console: Console | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run into ``run_dir``; returns the summary written to metrics.json.

    Under a multi-worker strategy only the chief writes ``run_dir`` and evaluates; another
    worker writes the same files into a temporary folder, deleted at the end, and returns
    ``{"chief": False, "epochs_run": ..., "train_seconds": ...}``.
    """
    from train import distribute

    console = console or Console()
    run_dir = Path(run_dir).expanduser()
    check_run_dir(run_dir, config)
    t = config.training
    try:  # user errors (names, paths, empty data, TF_CONFIG, no ImageNet download) surface here
        strategy = distribute.make_strategy(t.strategy)  # before any other TF op
        chief, on_gpu = distribute.is_chief(strategy), distribute.uses_gpu(strategy)
        keras.utils.set_random_seed(config.data.seed)
        prep = prepare(config, strategy, on_gpu)
    except (ValueError, RuntimeError, OSError) as err:
        raise UserError(str(err)) from None
    if overwrite and chief:
        clear_run(run_dir)
    state = None if overwrite else read_state(run_dir)  # a worker's view of the chief's run
    if state is not None:
        try:
            check_same_run(run_dir, config)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
        done = state.get("stopped_early") or state["epoch"] >= t.epochs
        if done and state.get("finished"):
            try:
                summary = json.loads((run_dir / METRICS_FILE).read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                summary = None  # gone or damaged: the model is evaluated again below
            if isinstance(summary, dict) and "test" in summary:
                console.print(f"{run_dir} already holds a finished run ({state['epoch']} epochs); "
                              "pass --overwrite to train again")
                return summary
    state = state or {"epoch": 0, "train_seconds": 0.0}
    # A resumed run keeps the precision it started with: its optimizer state depends on it.
    state.setdefault("mixed_precision", distribute.resolve_mixed_precision(t.mixed_precision, on_gpu))
    try:
        model = _build(config, strategy, state["mixed_precision"])
    except (ValueError, RuntimeError, OSError) as err:
        raise UserError(str(err)) from None
    if strategy.num_replicas_in_sync > 1 or state["mixed_precision"] or prep.pipeline != "python":
        console.print(f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}), "
                      f"{prep.pipeline} input pipeline, mixed precision "
                      f"{'on' if state['mixed_precision'] else 'off'}")
    # A worker writes its copy of the run into a scratch folder (a killed worker's goes later).
    with contextlib.nullcontext(run_dir) if chief else atomic.scratch_dir("worker") as out:
        return _fit(config, prep, model, state, run_dir, out, console, callbacks, progress)


def _build(config: RunConfig, strategy: Any, mixed: bool) -> keras.Model:
    """Model, optimizer and its state variables, created inside ``strategy.scope()``."""
    from train.distribute import set_precision

    set_precision(mixed)  # only the layers built now take the policy
    try:
        with strategy.scope():
            model = compile_model(build_model(config.model), config)
            model.optimizer.build(model.trainable_variables)
    finally:
        set_precision(False)
    return model


def _fit(config: RunConfig, prep: Prepared, model: keras.Model, state: dict, run_dir: Path,
         out: Path, console: Console, callbacks: Sequence[keras.callbacks.Callback],
         progress: bool) -> dict[str, Any]:
    """Fit from ``state`` (resume files read from ``run_dir``, everything written to ``out``),
    then evaluate the best model (the chief only, ``out == run_dir``)."""
    from train.evaluate import evaluate_model
    from train.plots import save_prediction_grid

    out.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(out)  # left by a process killed while writing
    save_config(config, out)
    state["finished"] = False
    t = config.training
    epochs = state["epoch"] if state.get("stopped_early") else t.epochs
    history: list[dict] = list(state.get("history", []))[: state["epoch"]]
    ckpt_state = state.get("checkpoint") or {}
    checkpoint = AtomicCheckpoint(out / MODEL_FILE, t.monitor, best=ckpt_state.get("best"),
                                  keep=t.checkpoint, defer=True)
    checkpoint.set_model(model)
    checkpoint.best_epoch = ckpt_state.get("best_epoch")
    checkpoint.sha256 = ckpt_state.get("sha256")
    if state["epoch"]:
        weights = check_resume_file(run_dir / RESUME_DIR / state["weights"],
                                    state.get("weights_sha256"))
        try:
            model.load_weights(weights)
        except (OSError, ValueError) as err:  # truncated, or not this model's weights
            raise UserError(f"cannot resume from {weights} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:120]}); pass --overwrite to start the run "
                            "again, or another --out") from None
        console.print(f"resuming {run_dir} after epoch {state['epoch']}")
        # Killed after the state but before the model file: write the model file now.
        checkpoint.pending = checkpoint.best_epoch == state["epoch"]
        if not checkpoint.pending:  # the best epoch's model file is the only copy of it
            check_resume_file(run_dir / MODEL_FILE, checkpoint.sha256)
        checkpoint.flush()
    elif t.init:
        try:
            for note in warm_start(model, config.model, t.init):
                console.print(note)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
    stopper = (ResumableEarlyStopping(monitor=t.monitor, mode="max", patience=t.patience,
                                      state=state.get("early_stopping")) if t.patience else None)
    saver = ResumeState(out, history, state, checkpoint, stopper)
    bar = RichProgress(t.epochs, prep.steps_per_epoch, console, live=progress and out == run_dir)
    freeze = [FreezeBackbone(t.freeze_backbone)] if t.freeze_backbone else []
    cbs = [StopCheck(), *freeze, checkpoint, *([stopper] if stopper else []), saver, bar, *callbacks]
    try:
        model.fit(prep.train_ds, validation_data=prep.val_ds, epochs=epochs,
                  initial_epoch=state["epoch"], steps_per_epoch=prep.steps_per_epoch,
                  callbacks=cbs, verbose=0, shuffle=False)  # the dataset shuffles itself
    finally:
        bar.stop()
    stopped_early = bool(state.get("stopped_early") or (stopper and stopper.stopped_epoch > 0))
    state["stopped_early"] = stopped_early
    write_json_atomic(out / RESUME_DIR / STATE_FILE, state)
    if out != run_dir:  # not the chief: the chief evaluates and writes the summary
        return {"chief": False, "epochs_run": state["epoch"], "train_seconds": state["train_seconds"]}

    # The metrics are of the file this run saved, not of one put in its place meanwhile.
    best = keras.models.load_model(check_resume_file(run_dir / MODEL_FILE, checkpoint.sha256),
                                   compile=False)
    report = evaluate_model(best, prep.test_source, image_size=config.model.image_size,
                            box_format=config.model.box_format, labels=config.model.labels)
    images = [prep.test_source[i] for i in range(min(16, len(prep.test_source)))]
    save_prediction_grid(best, images, config, run_dir / PLOT_FILE)
    problems = data_problems(prep.train_source)
    write_problems(run_dir, problems)
    summary = {
        "epochs_run": state["epoch"], "checkpoint": t.checkpoint, "best_epoch": checkpoint.best_epoch,
        "monitor": t.monitor, "best_monitor": checkpoint.best, "stopped_early": stopped_early,
        "train_seconds": state["train_seconds"], "steps_per_epoch": prep.steps_per_epoch,
        "last_epoch": history[-1] if history else None,
        "test": {k: v for k, v in report.items() if k != "iou"},
        "data_problems": len(problems),
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


__all__ = ["AtomicCheckpoint", "compile_model", "prepare", "save_model_atomic", "split_source",
           "train"]
