"""Export a trained run into the runtime's default model files (``make models``).

    python -m export.make_models [--run runs/demo] [--out models] [--name cat]

writes OUT/<name>_fp32.tflite, <name>_int8.tflite, <name>_fp32.onnx and <name>_int8.onnx
(``models/cat_int8.tflite`` is what ``runtime.webcam`` and ``runtime.infer`` load by
default), each verified against the Keras model, with one table.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_RUN = "runs/demo"
JOBS = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]


def default_name(run: Path) -> str:
    """The object class of a single-class run (``cat``), else ``model``."""
    try:
        labels = json.loads((run / "config.json").read_text())["model"]["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        return "model"
    return str(labels[1]) if len(labels) == 2 else "model"


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags, export the four default files, print the table."""
    from rich.console import Console

    from export._cli import add_common_args, parser, run_cli

    ap = parser(
        "python -m export.make_models", "Export a trained run into the runtime's default models."
    )
    ap.add_argument(
        "--run", default=DEFAULT_RUN, help=f"trained run directory (default {DEFAULT_RUN})"
    )
    ap.add_argument(
        "--out-dir",
        "--out",
        dest="out_dir",
        default="models",
        help="folder for the model files (default models)",
    )
    ap.add_argument("--name", default=None, help="file name stem (default: the run's object class)")
    add_common_args(ap, model=False, out=False)
    args = ap.parse_args(argv)
    run = Path(args.run)
    if not (run / "model.keras").is_file():
        Console(stderr=True).print(
            f"[red]error:[/] no trained model at {run}/model.keras; train "
            "the demo first (make demo) or pass --run RUN_DIR",
            highlight=False,
        )
        return 2
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    args.model, args.out = str(run), None
    return run_cli(args, JOBS, stem=args.name or default_name(run))


if __name__ == "__main__":
    raise SystemExit(main())
