"""Train a single-object localizer.

    python -m train --data SOURCE [--data-dir PATH] [--backbone NAME] [--image-size N]
                    [--epochs N] [--steps-per-epoch N] [--batch-size N] [--loss NAME]
                    [--lr F] [--weights imagenet|none|PATH] [--alpha F]
                    [--box-format xyxy|xywh] [--preset demo] --out RUN_DIR

Rerunning the same command after an interruption resumes after the last finished epoch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.errors import UserError

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    # Choices and help come from the registries: a new entry shows up here the day it is added.
    from data.augment import AUGMENTS
    from data.catalog import SOURCES
    from train.config import PRESETS
    from train.distribute import STRATEGIES
    from train.losses import BOX_LOSSES
    from train.model import BACKBONES, VECTORIZERS
    from train.tf_pipeline import PIPELINES

    p = argparse.ArgumentParser(prog="python -m train", description="Train a single-object localizer.")
    p.add_argument("--out", required=True, help="run directory (created; reused to resume)")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="named config to start from (demo: built-in data; real: 100-300 labelled "
                   "photos); flags override it")
    p.add_argument("--data", nargs="+", metavar="NAME[:WEIGHT]",
                   help=f"data source(s): {', '.join(SOURCES)}; several are mixed by weight "
                   "(e.g. --data voc:3 faces-on-scenes:1), labels merged by name")
    p.add_argument("--data-dir", nargs="+", metavar="PATH",
                   help="folder (or file) of each file source (csv, voc, yolo, coco), in --data order")
    p.add_argument("--train-size", type=int,
                   help="distinct samples of a synthetic training split (and the epoch length "
                   "of a pasted file source)")
    p.add_argument("--negatives", type=float, help="share of synthetic no-object samples")
    p.add_argument("--multi", choices=("skip", "largest"), help="images with several boxes")
    p.add_argument("--augment", choices=list(AUGMENTS),
                   help="augmentation profile (basic: geometry + colour; camera: + rotation, "
                   "gamma, white balance, grayscale, blur, noise, JPEG, wider scales)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                   help="turn off training augmentation")
    p.add_argument("--aug", metavar="KEY=VALUE,...",
                   help="change single augmentation settings, e.g. rotate=0.3,jpeg=0.5 "
                   "(see data/augment.py)")
    p.add_argument("--paste", type=float, metavar="P",
                   help="share of file-source training samples made by pasting the training "
                   "objects onto other backgrounds (0 = off)")
    p.add_argument("--paste-opt", metavar="KEY=VALUE,...",
                   help="paste settings, e.g. scale=0.1:1.0,scenes=0.7,negatives=0.1 "
                   "(see data/paste.py PasteOptions)")
    p.add_argument("--init", metavar="RUN_OR_KERAS",
                   help="warm start from another run (or .keras file) of the same architecture")
    p.add_argument("--freeze-backbone", type=int, metavar="N",
                   help="keep the backbone fixed for the first N epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--backbone", choices=list(BACKBONES))
    p.add_argument("--image-size", type=int, help="square input side in pixels")
    p.add_argument("--weights", help="imagenet, none or a backbone weights file")
    p.add_argument("--alpha", type=float, help="width multiplier (MobileNets, small_cnn)")
    p.add_argument("--box-format", choices=("xyxy", "xywh"))
    p.add_argument("--vectorizer", choices=list(VECTORIZERS),
                   help="attention: spatial-softmax pooling with the weighted cell position")
    p.add_argument("--head-units", type=int)
    p.add_argument("--reduce-filters", type=int, help="extra 3x3 stride-2 conv (0 = none)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--loss", choices=list(BOX_LOSSES), help="box loss (default giou_l1)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 3e-4)")
    p.add_argument("--decay-rate", type=float, help="learning-rate factor per decay step (0.8)")
    p.add_argument("--decay-steps", type=int, help="steps between decays (3600)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0 = off)")
    p.add_argument("--checkpoint", choices=("best", "last"),
                   help="model.keras holds the best epoch by validation IoU (default) or the last")
    p.add_argument("--strategy", choices=list(STRATEGIES),
                   help="auto (default): every GPU of this machine when it has several, else one "
                   "device; mirrored: all local GPUs; multiworker: several machines via TF_CONFIG "
                   "(README 'Scaling'). --batch-size is the global batch")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="float16 compute, float32 weights and outputs (default: on with a GPU)")
    p.add_argument("--input-pipeline", choices=list(PIPELINES),
                   help="python: numpy/OpenCV (reference, default on CPU); tf: decoded once, "
                   "augmented in TensorFlow ops, no GIL (default on GPU)")
    p.add_argument("--cache-dir", metavar="PATH",
                   help="keep the tf pipeline's decoded training images here between runs")
    p.add_argument("--warmup-steps", type=int,
                   help="ramp the learning rate up linearly over N first steps (large batches)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show TensorFlow's start-up lines and debug logs")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no live progress bars (logs only)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Any:
    """The run's ``RunConfig`` from parsed flags (a UserError names a bad value)."""
    from train.config import FLAG_FIELDS, resolve_config

    flags = {k: getattr(args, k) for k in FLAG_FIELDS if hasattr(args, k)}
    try:
        config = resolve_config(args.preset, **flags)
    except ValueError as err:
        raise UserError(str(err)) from None
    for flag in ("data", "data_dir"):  # one value stays a plain string in config.json
        value = getattr(config.data, "source" if flag == "data" else flag)
        if isinstance(value, list) and len(value) == 1:
            setattr(config.data, "source" if flag == "data" else flag, value[0])
    try:
        from data.catalog import parse_data

        parse_data(config.data.source, config.data.data_dir)
    except ValueError as err:
        raise UserError(str(err)) from None
    return config


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Resolve the config from the flags and train; returns the run summary."""
    from train.fit import train

    config = config_from_args(args)
    summary = train(config, args.out, console=console, overwrite=args.overwrite,
                    progress=args.progress)
    if summary.get("chief") is False:  # another worker of a multi-worker run
        console.print(f"worker finished {summary['epochs_run']} epochs; the chief wrote {args.out}")
        return summary
    console.print(summary_table(summary, config, args.out))
    return summary


def summary_table(summary: dict[str, Any], config: Any, out: str | Path) -> Table:
    """The final rich table: what was trained and how well it localizes."""
    m, t = config.model, config.training
    test = summary["test"]
    table = Table(title=f"edgeloc run {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("data", config.data.describe()),
        ("model", f"{m.backbone} a={m.alpha:g} {m.image_size}px {m.vectorizer} {m.box_format}"),
        ("loss / lr", f"{t.loss} / {config.optimizer.learning_rate:g}"),
        ("epochs (best)", f"{summary['epochs_run']} ({summary['best_epoch']})"
         + (" early stop" if summary["stopped_early"] else "")),
        ("training time", f"{summary['train_seconds']:.0f} s"),
        ("test images", f"{test['images']} ({test['positives']} with object)"),
        ("test mean IoU", f"{test['mean_iou']:.3f}"),
        ("test CorLoc@0.5", f"{test['corloc@0.5']:.3f}"),
        ("test CorLoc@0.75", f"{test['corloc@0.75']:.3f}"),
        ("test class accuracy", f"{test['accuracy']:.3f}"),
        ("model file", str(Path(out) / "model.keras")),
        *([("skipped data", f"{summary['data_problems']} entries, listed in data-problems.txt")]
          if summary.get("data_problems") else []),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from runtime._cli import (refuse_empty, require_extra, sigterm_stops, stop_exit_code,
                              stop_reason)
    from runtime.quiet import quiet_tensorflow

    # Before anything imports TensorFlow (the registries behind --help do): its start-up
    # lines go to the debug log unless -v asks for them.
    verbose = any(a in ("-v", "--verbose") for a in (sys.argv[1:] if argv is None else argv))
    quiet_tensorflow(verbose)
    try:
        require_extra("training")  # its flags come from registries that import Keras
    except UserError as err:
        Console(soft_wrap=True).print(f"[red]error:[/red] {escape(str(err))}", highlight=False)
        return 2
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one-line usage error (or --help)
        return int(exit_.code or 0)
    console = Console(soft_wrap=True)  # an error stays one line when piped (rich wraps at 80)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        refuse_empty(args)  # an unset shell variable: --init "" trained from scratch silently
        # SIGTERM (docker stop, a batch scheduler) stops it as Ctrl-C does; both are taken
        # here, so one that arrives inside TensorFlow is raised after the current step.
        with sigterm_stops([]):
            run(args, console)
    except KeyboardInterrupt as stop:
        console.print(f"[yellow]interrupted[/yellow] ({stop_reason(stop)}); rerun the same "
                      f"command to resume {args.out} after its last finished epoch")
        return stop_exit_code(stop_reason(stop))
    except UserError as err:  # bugs elsewhere keep their traceback
        console.print(f"[red]error:[/red] {escape(str(err))}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
