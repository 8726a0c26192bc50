"""Evaluate a trained localizer on a data split: mean IoU, CorLoc@0.5/0.75, class accuracy.

    python -m train.evaluate --model runs/demo --data cat-on-scenes [--split test]

Images are preprocessed with ``runtime.contract.preprocess``, exactly as the runtime does,
so the figures describe what a deployed model sees.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.contract import preprocess, to_xyxy

log = logging.getLogger(__name__)
THRESHOLDS = (0.5, 0.75)


def predict_samples(model: Any, samples: Sequence[Any], image_size: int,
                    batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Run the model on samples: (box (N, 4) in the model's format, score (N, K))."""
    boxes, scores = [], []
    for start in range(0, len(samples), batch_size):
        batch = np.stack([preprocess(s.image, image_size) for s in samples[start:start + batch_size]])
        out = model(batch, training=False)  # {"box": (b, 4), "score": (b, K)}
        boxes.append(np.asarray(out["box"]))
        scores.append(np.asarray(out["score"]))
    return np.concatenate(boxes), np.concatenate(scores)


def evaluate_model(model: Any, source: Any, *, image_size: int, box_format: str,
                   labels: Sequence[str], batch_size: int = 32,
                   thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, Any]:
    """Evaluate ``model`` on every sample of ``source``; see train.metrics.localization_report."""
    from train.metrics import localization_report  # Keras: after main's extra check

    # One batch of images in memory at a time: at ~200 KB a sample, --size 100000 held 20 GB.
    boxes, scores, true_boxes, indices = [], [], [], []
    for start in range(0, len(source), batch_size):
        samples = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        box, score = predict_samples(model, samples, image_size, batch_size)
        boxes.append(box)
        scores.append(score)
        true_boxes += [np.asarray(s.box, np.float64) for s in samples]  # xyxy
        indices += [s.label for s in samples]
    pred_box, pred_score = np.concatenate(boxes), np.concatenate(scores)
    true_box = np.stack(true_boxes)
    true_label = _map_labels(indices, list(source.labels), list(labels))
    report = localization_report(true_box, true_label, to_xyxy(pred_box, box_format), pred_score,
                                 list(labels), box_format="xyxy", thresholds=thresholds)
    return report


def _map_labels(indices: list[int], source_labels: list[str], model_labels: list[str]) -> np.ndarray:
    """Source label indices -> model label indices by name (-1 for names the model lacks)."""
    if source_labels == model_labels:
        return np.asarray(indices, int)
    lookup = {name: i for i, name in enumerate(model_labels)}
    missing = sorted(set(source_labels) - set(lookup))
    if missing:
        log.warning("labels %s are unknown to the model (it knows %s)", missing, model_labels)
    return np.asarray([lookup.get(source_labels[i], -1) for i in indices], int)


def report_table(report: dict[str, Any], title: str) -> Table:
    """A rich table of an evaluation report."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("images (with object)", f"{report['images']} ({report['positives']})")
    table.add_row("mean IoU", f"{report['mean_iou']:.3f}")
    for key in [k for k in report if k.startswith("corloc@")]:
        table.add_row(key.replace("corloc", "CorLoc"), f"{report[key]:.3f}")
    table.add_row("class accuracy", f"{report['accuracy']:.3f}")
    for name, acc in report["per_class_accuracy"].items():
        table.add_row(escape(f"  accuracy[{name}]"), "-" if acc is None else f"{acc:.3f}")
    return table


def run(model_path: str | Path, *, data: str | None = None, data_dir: str | None = None,
        split: str = "test", size: int | None = None, seed: int | None = None,
        out: str | Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Load a run, evaluate it on ``data``/``split``, print a table and write the JSON."""
    from train.config import RunConfig, load_run
    from runtime.atomic import atomic_output, json_text, refuse_overwrite
    from runtime.backends import FORMATS
    from runtime.contract import model_files
    from runtime.errors import UserError
    from runtime.paths import check_output_file
    from train.callbacks import RESUME_DIR
    from train.rundir import RUN_FILES
    from train.splits import split_source

    console = console or Console()
    if size is not None and size < 1 or seed is not None and seed < 0:
        raise UserError(f"--size must be at least 1 and --seed at least 0, got {size}, {seed}")
    try:
        model, cfg = load_run(model_path)
        config = RunConfig.from_dict(cfg)
        _check_same_split(config, data, data_dir, split, seed)
        config = _override_data(config, data, data_dir, size, seed)
        source = split_source(config, split)
    except (ValueError, OSError) as err:
        raise UserError(str(err)) from None
    path = Path(model_path)
    run_dir = path if path.is_dir() else path.parent
    names = [config.data.source] if isinstance(config.data.source, str) else config.data.source
    tag = "+".join(n.split(":")[0] for n in names)
    target = check_output_file(out or run_dir / f"evaluation-{tag}-{split}.json", "--out")
    # The run's resume state and its exported models are its files too, not report names.
    own = [*(run_dir / n for n in RUN_FILES), *(run_dir / RESUME_DIR).glob("*"),
           *model_files(m for ext in FORMATS for m in run_dir.glob(f"*.{ext}"))]
    refuse_overwrite(target, [path, *own, *config.data.data_dirs])
    m = config.model
    # Opened first: an unwritable --out fails before the work; a device (/dev/null) or
    # FIFO is written in place, never replaced by a regular file.
    with atomic_output(target, "--out") as fh:
        report = evaluate_model(model, source, image_size=m.image_size,
                                box_format=m.box_format, labels=m.labels)
        report = {"model": str(model_path), "data": config.data.source,
                  "data_dir": config.data.data_dir, "split": split,
                  **{k: v for k, v in report.items() if k != "iou"}}
        console.print(report_table(report, f"{config.data.describe()} / {split}"))
        fh.write(json_text(report))
    console.print(f"wrote {target}")
    return report


def _check_same_split(config: Any, data: str | None, data_dir: str | None, split: str,
                      seed: int | None) -> None:
    """Refuse another --seed on the run's own files: the seed shuffles the split, so the
    held-out images would include images the run trained on (a silently inflated score)."""
    own = not data and (data_dir is None or [data_dir] == config.data.data_dirs)
    if own and split != "train" and config.data.data_dirs and seed not in (None, config.data.seed):
        raise ValueError(
            f"--seed {seed} splits {config.data.describe()} anew: its {split} images would include "
            f"ones the run trained on (seed {config.data.seed}); leave --seed out, or evaluate "
            "other data (--data, --data-dir)"
        )


def _override_data(config: Any, data: str | None, data_dir: str | None, size: int | None,
                   seed: int | None) -> Any:
    if data:  # another source: its data dir comes from the flag only
        config.data.source, config.data.data_dir = data, data_dir
    elif data_dir is not None:
        config.data.data_dir = data_dir
    if size is not None:
        config.data.train_size = config.data.val_size = config.data.test_size = size
    if seed is not None:
        config.data.seed = seed
    return config


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="run directory or .keras file")
    p.add_argument("--data", help="source name or file format (default: the run's training source)")
    p.add_argument("--data-dir", help="folder for file sources")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--size", type=int, help="samples of a synthetic source (default: the run's)")
    p.add_argument("--seed", type=int, help="source seed (default: the run's)")
    p.add_argument("--out", help="JSON report path (default: RUN/evaluation-SOURCE-SPLIT.json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from runtime._cli import refuse_empty, require_extra
    from runtime.errors import UserError

    args = parse_args(argv)
    console = Console()
    try:
        require_extra("evaluation")
        refuse_empty(args)  # --data "" fell back to the run's source, --out "" to the default
        run(args.model, data=args.data, data_dir=args.data_dir, split=args.split, size=args.size,
            seed=args.seed, out=args.out, console=console)
    except UserError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)  # one line when piped
        return 2
    return 0


__all__ = ["evaluate_model", "main", "predict_samples", "run"]

if __name__ == "__main__":
    sys.exit(main())
