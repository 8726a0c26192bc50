"""Run configuration: dataclasses resolved from defaults, a preset and CLI flags.

Resolution order (later wins): dataclass defaults -> ``PRESETS[preset]`` -> explicit flags.
The resolved config is saved as ``config.json`` in the run directory; ``load_run`` reads a
run back as (keras.Model, config dict).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from train.model import ModelSpec
from data.sources import SourceOptions
from runtime.atomic import write_json as write_json_atomic  # the one atomic writer
from runtime.errors import UserError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"




@dataclass
class DataConfig:
    """Where the data comes from and how it is augmented.

    Attributes:
        source: a source name (synthetic or a file format: csv, voc, yolo, coco), or a list
            of ``NAME[:WEIGHT]`` items mixed by weight (labels merged by name).
        data_dir: folder (or file) of a file source; a list with one entry per file source.
        train_size: distinct training samples of a synthetic source (and the epoch length
            of a file source under paste augmentation).
        val_size: validation samples of a synthetic source (checked after every epoch).
        test_size: test samples of a synthetic source (final evaluation and plots).
        negatives: share of synthetic samples without an object.
        multi: images with several boxes in file sources: ``skip`` or ``largest``.
        val_fraction: share of a file dataset held out, split in half into val and test.
        augment: a profile of ``data.augment.AUGMENTS`` (``none``, ``basic``, ``camera``);
            True/False are ``basic``/``none``.
        augment_overrides: changes to that profile, ``"rotate=0.3,jpeg=0.5"``; ``--aug``
            adds to a preset's (a key given again wins: ``--aug dim=0`` turns it off).
        paste: share of file-source training samples composed by object-bank pasting.
        paste_options: other ``data.paste.PasteOptions`` fields (scale, scenes, ...).
        seed: seed of sources, shuffling and augmentation.
        cache_dir: where the ``tf`` input pipeline keeps the decoded training images between
            runs (None: in memory when they fit a quarter of the free memory, else a
            temporary folder for this run).
    """

    source: str | list[str] = "cat-on-scenes"
    data_dir: str | list[str] | None = None
    train_size: int = 2000
    val_size: int = 200
    test_size: int = 400
    # The source options' own defaults: one place to change them.
    negatives: float = SourceOptions.negatives
    multi: str = SourceOptions.multi
    val_fraction: float = SourceOptions.val_fraction
    augment: bool | str = "basic"
    augment_overrides: str | None = None
    paste: float = 0.0
    paste_options: dict[str, Any] = field(default_factory=dict)
    seed: int = SourceOptions.seed
    cache_dir: str | None = None

    @property
    def data_dirs(self) -> list[str]:
        """``data_dir`` as a list: one entry per file source, empty without one."""
        return [self.data_dir] if isinstance(self.data_dir, str) else list(self.data_dir or [])

    def describe(self) -> str:
        """The sources in one line, e.g. ``voc ../cats/train + cat-on-scenes``."""
        names = [self.source] if isinstance(self.source, str) else list(self.source)
        text = " + ".join(names)
        return f"{text} {' '.join(self.data_dirs)}".strip()


@dataclass
class OptimizerConfig:
    """Adam with a staircase exponential learning-rate decay (reference design 2).

    Attributes:
        learning_rate: initial learning rate.
        decay_rate: multiply the rate by this every ``decay_steps`` steps (1.0 = constant).
        decay_steps: steps between decays.
        staircase: decay in steps rather than continuously.
        clipnorm: clip each gradient to this norm (None = off).
        warmup_steps: raise the rate linearly from ~0 over this many first steps (0 = off);
            with a large global batch and a linearly scaled rate (train.distribute).
    """

    learning_rate: float = 3e-4
    decay_rate: float = 0.8
    decay_steps: int = 3600
    staircase: bool = True
    clipnorm: float | None = None
    warmup_steps: int = 0


@dataclass
class TrainingConfig:
    """How long and on what objective to train.

    Attributes:
        epochs: maximum number of epochs.
        steps_per_epoch: batches per epoch (None = one pass over the training split).
        batch_size: images per batch.
        loss: a key of ``train.losses.BOX_LOSSES``.
        score_weight: weight of the score (class) loss relative to the box loss.
        patience: early stopping after this many epochs without a better monitor (0 = off).
        monitor: validation metric that picks the best epoch and drives early stopping.
        checkpoint: what model.keras holds: ``best`` (best epoch by ``monitor``) or
            ``last`` (use it when the validation split doubles as the test split, as
            the held-out part of a file dataset does, so the test figure stays unbiased).
        init: warm start: a run directory or ``.keras`` file of the same architecture whose
            weights the run starts from (the score layer is re-initialized when the label
            count differs).
        freeze_backbone: keep the backbone's weights fixed for this many first epochs
            (with ``init``: the head adapts before the features move).
        strategy: where to train, a key of ``train.distribute.STRATEGIES`` (``auto``: every
            GPU of this machine when it has several, else one device); ``batch_size`` is
            the global batch over all replicas.
        mixed_precision: float16 compute with float32 weights and outputs (None: on where
            the replicas are GPUs, off on CPU).
        input_pipeline: ``python`` (numpy/OpenCV, the reference), ``tf`` (decoded once,
            augmented in TensorFlow ops: no GIL) or ``auto`` (tf on a GPU, else python).
        Strategy, precision and input pipeline may change when a run is resumed.
    """

    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 32
    loss: str = "giou_l1"
    score_weight: float = 0.2
    patience: int = 5
    monitor: str = "val_box_iou"
    checkpoint: str = "best"
    init: str | None = None
    freeze_backbone: int = 0
    strategy: str = "auto"
    mixed_precision: bool | None = None
    input_pipeline: str = "auto"


@dataclass
class RunConfig:
    """Everything that defines a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"]["labels"] = list(self.model.labels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        model = dict(data.get("model", {}))
        if "labels" in model:
            model["labels"] = tuple(model["labels"])
        return cls(
            data=_build(DataConfig, data.get("data", {})),
            model=_build(ModelSpec, model),
            optimizer=_build(OptimizerConfig, data.get("optimizer", {})),
            training=_build(TrainingConfig, data.get("training", {})),
            preset=data.get("preset"),
        )


def _build(cls: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


# The edge-sized model of the demo, cat and real presets. alpha 2 (0.6 M parameters, ~0.35
# ms int8 on one x86 core): more accurate than alpha 1, and big enough that a 640x480
# frame's resize and drawing stay a small share.
_EDGE_MODEL = {"backbone": "small_cnn", "image_size": 128, "alpha": 2.0, "weights": "none",
               "vectorizer": "attention", "head_units": 256}
# A fixed budget (4200 steps, about 11 min on 2 cores): no early stopping, as the small val
# split is noisy; model.keras is still the best epoch by val mean IoU.
_DEMO_BUDGET = {"epochs": 14, "steps_per_epoch": 300, "batch_size": 32, "loss": "giou_l1",
                "patience": 0}

# Presets: section -> field -> value, applied over the defaults.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # The README's main command: an edge-sized model trained from scratch on built-in data.
    "demo": {
        # 10% background-only samples teach the "none" class, so the score means something.
        "data": {"source": "cat-on-scenes", "train_size": 20000, "val_size": 200, "test_size": 500,
                 "negatives": 0.1},
        "model": _EDGE_MODEL,
        "optimizer": {"learning_rate": 1e-3, "decay_rate": 0.5, "decay_steps": 1400},
        "training": _DEMO_BUDGET,
    },
    # The default models (`make models`): the demo's model and budget, trained for real cat
    # photos from built-in data alone. The one cat photo is a close-up of a head, so whole
    # cats come from procedural figures textured with its fur and face (cat-figures), heads
    # from the photo under a soft mask at every scale (cat-cutouts), and the reference
    # design's pasted photo (cat-on-scenes); camera randomization on top. On real cat photos
    # CorLoc@0.5 rises from 0.10 (demo) to 0.66 (BENCHMARKS.md section 7).
    "cat": {
        "data": {"source": ["cat-figures:2", "cat-cutouts:2", "cat-on-scenes:1"], "train_size": 20000,
                 "val_size": 200, "test_size": 500, "negatives": 0.1, "augment": "camera"},
        "model": _EDGE_MODEL,
        "optimizer": {"learning_rate": 1e-3, "decay_rate": 0.5, "decay_steps": 1400},
        "training": _DEMO_BUDGET,
    },
    # The default face model (`make models`): the demo's model and budget on the built-in
    # faces (portraits and LFW crops on scenes) with camera randomization. On all 154 real face
    # photos of ../shared/datasets/faces (another collection) CorLoc@0.5 0.58, where OpenCV's
    # Haar face cascade gets 0.34 (BENCHMARKS.md section 7).
    "face": {
        "data": {"source": "faces-on-scenes", "train_size": 20000, "val_size": 200, "test_size": 500,
                 "negatives": 0.1, "augment": "camera"},
        "model": _EDGE_MODEL,
        "optimizer": {"learning_rate": 1e-3, "decay_rate": 0.5, "decay_steps": 1400},
        "training": _DEMO_BUDGET,
    },
    # 100-300 labelled photos on 2 CPU cores, from scratch, in under 10 minutes: the demo's
    # edge-sized model, trained on the user's objects pasted onto new backgrounds (70% of
    # samples, the object's larger side 10-100% of the frame) and with camera randomization,
    # so it travels to other cameras and collections. On the cats, paste 0.7 at 0.1-1.0 beat
    # paste 0.5 at 0.15-1.0 both on the own test half (CorLoc 0.93 vs 0.89) and on
    # cat-on-scenes (0.73 vs 0.64); on the faces it cost 1-2 test images (one seed each;
    # distractors, weight EMA and other scene shares did not travel better: BENCHMARKS.md
    # section 7). Dim light (an exposure gain of 0.3-0.8 on 30% of samples) on top: the
    # one camera operation that travelled on every proxy measured (section 7, tenth round);
    # on evenly lit built-in faces it cost 0.09 CorLoc over three seeds (eleventh round).
    # 3600 steps: 410-590 s on 2 cores with AVX-512, 1000-1250 s with AVX2 only.
    "real": {
        "data": {"train_size": 4000, "paste": 0.7, "paste_options": {"scale": [0.1, 1.0]},
                 "augment": "camera", "augment_overrides": "dim=0.3"},
        "model": _EDGE_MODEL,
        "optimizer": {"learning_rate": 1e-3, "decay_rate": 0.5, "decay_steps": 1200},
        "training": {**_DEMO_BUDGET, "epochs": 12},
    },
    # Reference design 1: VGG16 transfer learning, (x, y, w, h) boxes, binary cross-entropy.
    "reference-vgg": {
        "data": {"source": "cat-on-scenes"},
        "model": {"backbone": "vgg16", "image_size": 224, "weights": "imagenet", "box_format": "xywh",
                  "vectorizer": "flatten", "head_units": 256},
        "training": {"loss": "bce", "epochs": 10},
    },
    # Reference design 2: ResNet50 + Conv2D(1024, 3, 2) + GAP + Dense(512), MSE, batch 16.
    "reference-resnet": {
        "data": {"source": "csv"},
        "model": {"backbone": "resnet50", "image_size": 300, "weights": "imagenet",
                  "reduce_filters": 1024, "vectorizer": "gap", "head_units": 512},
        "training": {"loss": "mse", "epochs": 10, "batch_size": 16},
    },
}

# CLI flag (argparse dest) -> (section, field)
FLAG_FIELDS: dict[str, tuple[str, str]] = {
    "data": ("data", "source"),
    "data_dir": ("data", "data_dir"),
    "train_size": ("data", "train_size"),
    "negatives": ("data", "negatives"),
    "multi": ("data", "multi"),
    "seed": ("data", "seed"),
    "augment": ("data", "augment"),
    "aug": ("data", "augment_overrides"),
    "paste": ("data", "paste"),
    "paste_opt": ("data", "paste_options"),
    "backbone": ("model", "backbone"),
    "image_size": ("model", "image_size"),
    "weights": ("model", "weights"),
    "alpha": ("model", "alpha"),
    "box_format": ("model", "box_format"),
    "vectorizer": ("model", "vectorizer"),
    "head_units": ("model", "head_units"),
    "reduce_filters": ("model", "reduce_filters"),
    "lr": ("optimizer", "learning_rate"),
    "decay_rate": ("optimizer", "decay_rate"),
    "decay_steps": ("optimizer", "decay_steps"),
    "epochs": ("training", "epochs"),
    "steps_per_epoch": ("training", "steps_per_epoch"),
    "batch_size": ("training", "batch_size"),
    "loss": ("training", "loss"),
    "patience": ("training", "patience"),
    "checkpoint": ("training", "checkpoint"),
    "init": ("training", "init"),
    "freeze_backbone": ("training", "freeze_backbone"),
    "strategy": ("training", "strategy"),
    "mixed_precision": ("training", "mixed_precision"),
    "input_pipeline": ("training", "input_pipeline"),
    "cache_dir": ("data", "cache_dir"),
    "warmup_steps": ("optimizer", "warmup_steps"),
}

# Fields that say where and how a run computes, not what it learns: a resumed run may
# change them (another machine, another GPU count) without being refused as another run.
PLACEMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "training": ("strategy", "mixed_precision", "input_pipeline"),
    "data": ("cache_dir",),
}


def resolve_config(preset: str | None = None, **flags: Any) -> RunConfig:
    """Defaults, then ``PRESETS[preset]``, then every flag that is not None."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    config = RunConfig(preset=preset)
    for section, values in PRESETS.get(preset or "default", {}).items():
        _set(config, section, values)
    for flag, value in flags.items():
        if flag not in FLAG_FIELDS:
            raise ValueError(f"unknown config flag {flag!r}; valid: {', '.join(FLAG_FIELDS)}")
        if value is not None:
            section, name = FLAG_FIELDS[flag]
            if name == "paste_options" and isinstance(value, str):
                value = {**config.data.paste_options, **_key_values(value)}
            if name == "augment_overrides" and value and config.data.augment_overrides:
                value = f"{config.data.augment_overrides},{value}"  # --aug adds to the preset's
            _set(config, section, {name: value})
    if flags.get("augment") in ("none", False) and not flags.get("aug"):
        config.data.augment_overrides = None  # --no-augment: the preset's changes have no profile
    check_numbers(config)
    from data.augment import get_augment

    get_augment(config.data.augment, config.data.augment_overrides)  # --aug, before any work
    return config


# (section, field) -> (lowest, lowest allowed?, highest or None, highest allowed?): numbers
# that would otherwise train silently wrong (--lr -1 climbs the loss, --decay-rate 0 stops
# learning after the first decay, --steps-per-epoch 0 meant "one pass") or fail deep inside.
_RANGES: dict[tuple[str, str], tuple[float, bool, float | None, bool]] = {
    ("training", "epochs"): (1, True, None, True),
    ("training", "steps_per_epoch"): (1, True, None, True),
    # A typo such as --batch-size 1000000000 filled memory for minutes before failing.
    ("training", "batch_size"): (1, True, 65536, True),
    ("training", "patience"): (0, True, None, True),
    ("training", "freeze_backbone"): (0, True, None, True),
    ("training", "score_weight"): (0, True, None, True),
    ("optimizer", "learning_rate"): (0, False, None, True),
    ("optimizer", "decay_rate"): (0, False, 1, True),  # above 1 the rate would grow
    ("optimizer", "decay_steps"): (1, True, None, True),
    ("optimizer", "warmup_steps"): (0, True, None, True),
    ("optimizer", "clipnorm"): (0, False, None, True),
    ("model", "alpha"): (0, False, None, True),
    # Below 8 the input pipeline fails after the data is loaded; 100000 px ran out of memory.
    ("model", "image_size"): (8, True, 4096, True),
    ("model", "head_units"): (0, True, None, True),
    ("model", "reduce_filters"): (0, True, None, True),
    ("model", "dropout"): (0, True, 1, False),
    ("data", "train_size"): (1, True, None, True),
    ("data", "negatives"): (0, True, 1, True),
    ("data", "paste"): (0, True, 1, True),
    ("data", "val_fraction"): (0, False, 1, False),
    ("data", "seed"): (0, True, 2**32 - 1, True),  # NumPy's and TensorFlow's seed range
}


def check_numbers(config: RunConfig) -> None:
    """Raise ValueError naming the flag of the first number outside its range (NaN and
    infinity included: a NaN learning rate would train to a NaN model and exit 0)."""
    flags = {where: flag for flag, where in FLAG_FIELDS.items()}
    for (section, name), (lowest, low_ok, highest, high_ok) in _RANGES.items():
        value = getattr(getattr(config, section), name)
        if value is None:
            continue
        where = flags.get((section, name))
        flag = "--" + where.replace("_", "-") if where else f"{section}.{name}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{flag} must be a finite number, got {value!r}")
        low = value < lowest or (value == lowest and not low_ok)
        high = highest is not None and (value > highest or (value == highest and not high_ok))
        if low or high:
            bound = f"at least {_plain(lowest)}" if low_ok else f"above {_plain(lowest)}"
            if highest is not None:
                bound += f" and {'at most' if high_ok else 'below'} {_plain(highest)}"
            raise ValueError(f"{flag} must be {bound}, got {_plain(value)}")


def _plain(value: float) -> str:
    """A bound or a value as a user types it: 4294967295, not 4.29497e+09."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _key_values(text: str) -> dict[str, Any]:
    """``"scale=0.1:1.0,scenes=0.7"`` -> {"scale": [0.1, 1.0], "scenes": 0.7}, checked by PasteOptions."""
    from data.augment import parse_key_values
    from data.paste import paste_options

    out = parse_key_values(text, "--paste-opt")
    try:
        paste_options(out)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--paste-opt: {err}") from None
    return out


def _set(config: RunConfig, section: str, values: dict[str, Any]) -> None:
    part = getattr(config, section)
    for name, value in values.items():
        if not hasattr(part, name):
            raise ValueError(f"config section {section!r} has no field {name!r}")
        setattr(part, name, tuple(value) if name == "labels" else value)


def save_config(config: RunConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to ``run_dir/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    write_json_atomic(path, config.to_dict())
    return path


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """Read ``config.json`` from a run directory (raises FileNotFoundError/ValueError)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # a damaged or binary file
        raise ValueError(f"{path} is not valid JSON ({err}); retrain or fix the file") from None
    except FileNotFoundError:
        raise
    except OSError as err:  # no permission, a broken or looping link
        raise ValueError(f"cannot read {path} ({err.strerror or err}); fix the file's "
                         "permissions or retrain") from None


def load_run(path: str | Path, *, compile: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load a trained run: ``path`` is a run directory or a ``.keras`` file.

    Returns (keras.Model, config dict). A bare ``.keras`` file without a ``config.json``
    beside it gets a config rebuilt from the model itself (labels are then generic).
    """
    import keras

    import train.losses  # noqa: F401  (registers custom objects)
    import train.metrics  # noqa: F401
    import train.model  # noqa: F401

    path = Path(path).expanduser()
    model_path = path / MODEL_FILE if path.is_dir() else path
    if not model_path.is_file():
        raise FileNotFoundError(
            f"no trained model at {model_path}; pass a run directory from `python -m train` "
            "or a .keras file"
        )
    if model_path.suffix != ".keras":
        raise ValueError(f"{model_path} is not a .keras file; pass a run directory or a .keras file")
    import zipfile

    if not zipfile.is_zipfile(model_path):  # Keras would say "File not found" for it
        raise ValueError(f"{model_path} is damaged or not a Keras model (a .keras file is a zip "
                         "archive); retrain, or pass another run or .keras file")
    try:
        model = keras.models.load_model(model_path, compile=compile)
    except Exception as err:  # zip/h5/deserialization errors all mean "not a usable model"
        raise ValueError(f"could not load {model_path}: {type(err).__name__}: {err}") from None
    cfg_dir = model_path.parent
    if (cfg_dir / CONFIG_FILE).is_file():
        config = load_config(cfg_dir)
        _check_fits(model, config, cfg_dir / CONFIG_FILE)
    elif os.path.lexists(cfg_dir / CONFIG_FILE):  # not "no config": a made-up one would guess
        raise ValueError(f"{cfg_dir / CONFIG_FILE} is not a regular file (a folder, a FIFO or "
                         "a broken link); restore the run's config.json or retrain")
    else:
        config = config_from_model(model)
    return model, config


def _check_fits(model: Any, config: dict[str, Any], path: Path) -> None:
    """Refuse a config.json that cannot be this model's (another run's, copied over): its
    labels or input size would make every metric and export silently wrong."""
    spec = config.get("model") if isinstance(config, dict) else None
    spec = spec if isinstance(spec, dict) else {}  # a damaged config is load_config's to name
    fix = "restore this run's config.json, or retrain"
    side = tuple(model.inputs[0].shape[1:3])
    size = spec.get("image_size")
    if isinstance(size, int) and None not in side and side != (size, size):
        raise ValueError(f"{path} says image_size {size} but the model takes {side[0]}x{side[1]} "
                         f"pixels: it is another run's config; {fix}")
    out = model.output
    k = out["score"].shape[-1] if isinstance(out, dict) and "score" in out else None
    labels = spec.get("labels")
    if k and isinstance(labels, list) and len(labels) != k:
        raise ValueError(f"{path} lists {len(labels)} labels {labels} but the model scores {k} "
                         f"classes: it is another run's config; {fix}")


def config_from_model(model: Any) -> dict[str, Any]:
    """A minimal run config for a model without one (a bare .keras file or an in-memory
    keras.Model): input size and label count from the model, generic labels."""
    import numpy as np

    size = int(model.inputs[0].shape[1])
    out = model(np.zeros((1, size, size, 3), "float32"), training=False)  # {"box", "score"}
    k = int(out["score"].shape[-1]) if isinstance(out, dict) and "score" in out else 2
    labels = ["none"] + [f"class{i}" for i in range(1, k)]
    spec = ModelSpec(image_size=size, labels=tuple(labels))
    return {"model": {**asdict(spec), "labels": labels}, "data": {}}


__all__ = ["UserError", "DataConfig", "OptimizerConfig", "PRESETS", "RunConfig", "TrainingConfig",
           "config_from_model", "load_config", "load_run", "resolve_config", "save_config", "write_json_atomic"]
