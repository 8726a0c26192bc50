"""The export CLIs, all four in one place: flags, the run, the summary table, exit codes.

    python -m export --model RUN --formats tflite,onnx --quantize none,int8
    python -m export.tflite --model RUN --quantize int8
    python -m export.onnx --model RUN --quantize int8 --method entropy
    python -m export.make_models [--run runs/demo]

Choices and help come from the registries (``export.formats.FORMATS``, the options' value
lists), so a new format or method shows up in ``--help`` the day it is added.
Exit codes: 0 all exports written and verified; 1 an export failed verification (its file
was not written); 2 a user mistake (bad path, file or flag value), one line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape

from export import make_models
from export._graph import quiet_tensorflow
from export._table import keras_row, row, table
from export.formats import FORMATS, all_quantize, export_all, jobs_for
from export.options import (
    ACTIVATIONS,
    DEFAULT_CALIB_SIZE,
    DEFAULT_MAX_IOU_DROP,
    DEFAULT_OPSET,
    DEFAULT_SCREEN,
    DEFAULT_VERIFY_SIZE,
    IO_TYPES,
    MAX_SAMPLES,
    METHODS,
    CalibrationOptions,
    OnnxOptions,
    VerifyOptions,
    check_not_empty,
)
from runtime._cli import require_extra, sigterm_stops, stop_exit_code, stop_reason
from runtime.errors import UserError

IO_HELP = "input dtype (and int8 model outputs): uint8 raw pixels (default), int8, float32"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2, one line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description)


def add_data_args(ap: argparse.ArgumentParser) -> None:
    """Calibration, verification and int8 weight flags, shared by every export CLI."""
    ap.add_argument(
        "--calib",
        default=None,
        help="int8 calibration data: a source name (cat-on-scenes, csv, voc, ...) or a "
        "folder of images (default: the run's training data)",
    )
    ap.add_argument(
        "--calib-dir", default=None, help="data folder/file for a file source (csv, voc, ...)"
    )
    ap.add_argument(
        "--calib-size",
        type=int,
        default=None,
        help=f"calibration images, drawn shuffled (default {DEFAULT_CALIB_SIZE}, or all "
        f"images of a smaller source; at most {MAX_SAMPLES})",
    )
    ap.add_argument(
        "--calib-screen",
        type=float,
        default=DEFAULT_SCREEN,
        help="leave out calibration images whose activations peak this many times above "
        f"the median (at most 5%%; 0 keeps all; default {DEFAULT_SCREEN:g})",
    )
    ap.add_argument(
        "--per-channel",
        dest="per_channel",
        action="store_const",
        const=True,
        default=None,
        help="int8: one weight scale per output channel (default: per tensor, the "
        "smallest file, falling back to per channel if verification fails)",
    )
    ap.add_argument(
        "--per-tensor",
        dest="per_channel",
        action="store_const",
        const=False,
        help="int8: one weight scale per tensor, no fallback",
    )
    ap.add_argument(
        "--max-iou-drop",
        type=float,
        default=DEFAULT_MAX_IOU_DROP,
        help="fail the export when mean IoU drops more than this vs Keras "
        f"(default {DEFAULT_MAX_IOU_DROP})",
    )
    ap.add_argument(
        "--no-verify", action="store_true", help="skip the held-out comparison with Keras"
    )
    ap.add_argument(
        "--verify-data",
        default=None,
        help="held-out data source (default: the test split of the run's training data)",
    )
    ap.add_argument("--verify-dir", default=None, help="data folder/file for --verify-data")
    ap.add_argument(
        "--verify-size",
        type=int,
        default=DEFAULT_VERIFY_SIZE,
        help=f"held-out images (default {DEFAULT_VERIFY_SIZE}; at most {MAX_SAMPLES})",
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="seed for drawing calibration/held-out samples"
    )
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="log progress and the libraries' own output"
    )


def add_onnx_args(ap: argparse.ArgumentParser) -> None:
    """The ``OnnxOptions`` flags of ``python -m export`` and ``python -m export.onnx``."""
    ap.add_argument(
        "--method", default="minmax", choices=METHODS, help="ONNX int8 calibration method"
    )
    ap.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    ap.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ONNX int8: 7-bit weights (default on), so x86 CPUs without VNNI, where 8-bit "
        "products can saturate, give the same boxes as other CPUs",
    )
    ap.add_argument(
        "--activations",
        default="uint8",
        choices=ACTIVATIONS,
        help="ONNX int8 activations: uint8 (default; the same integer graph on x86 and ARM) or "
        "int8 (ONNX Runtime's S8S8; boxes differ between x86 and ARM, overflow on Pi 4)",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The typed options objects for parsed flags (UserError on a bad value)."""
    check_not_empty(args)
    if args.seed < 0:
        raise UserError(f"--seed must be at least 0, got {args.seed}")
    if not (0.0 <= args.max_iou_drop <= 1.0):  # also nan: every comparison with it fails
        raise UserError(f"--max-iou-drop is a mean IoU difference in 0..1, got {args.max_iou_drop}")
    if not (0.0 <= args.calib_screen < float("inf")):
        raise UserError(f"--calib-screen must be a number >= 0, got {args.calib_screen}")
    calib = CalibrationOptions(
        args.calib, args.calib_dir, args.calib_size, args.calib_screen, args.seed
    )
    verify = None
    if not args.no_verify:
        verify = VerifyOptions(
            args.verify_data, args.verify_dir, args.verify_size, args.max_iou_drop, args.seed
        )
    onnx_flags = ("opset", "method", "activations", "reduce_range")  # add_onnx_args
    onnx = OnnxOptions(**{k: getattr(args, k) for k in onnx_flags if hasattr(args, k)})
    return {"calib": calib, "verify": verify, "onnx": onnx}


def run_cli(
    args: argparse.Namespace,
    jobs: list[tuple[str, str]] | None = None,
    *,
    out: str | None = None,
    out_dir: str | None = None,
    stem: str = "model",
) -> int:
    """Export for parsed flags; print the table; map errors to exit codes."""
    from rich.console import Console

    console = Console(stderr=False, width=None if sys.stdout.isatty() else 132)
    err = Console(stderr=True, soft_wrap=True)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:  # what native code printed (converters, XNNPACK): runtime.quiet's log
        logging.getLogger("runtime.quiet").setLevel(logging.DEBUG)
    stops: list[str] = []
    try:
        require_extra("export")
        if jobs is None:
            jobs = jobs_for(args.formats, args.quantize)
        settings = options(args)
        quiet_tensorflow(args.verbose)
        with sigterm_stops(stops):
            batch = export_all(
                args.model,
                jobs,
                out=out,
                out_dir=out_dir,
                stem=stem,
                io=args.io,
                per_channel=args.per_channel,
                on_job=lambda f, q: err.print(f"[bold]exporting[/] {f} {q} ..."),
                **settings,
            )
    except UserError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except Exception:
        if not stops:  # a bug: keep its traceback
            raise
        # An interrupt that lands inside TensorFlow's C++ code can come out as another
        # exception (a bare TypeError from its nest utilities): it is still the interrupt.
        return _interrupted(err, stops[0])
    except KeyboardInterrupt as stop:
        return _interrupted(err, stop_reason(stop))
    rows = []
    if batch.holdout is not None:
        path = batch.loaded.path
        rows.append(keras_row(batch.holdout, path.stat().st_size if path else None))
    rows += [row(r) for r in batch.results]
    console.print(table(rows))
    for r in batch.results:
        if r.ok:
            console.print(f"wrote {r.path}")
    failed = [r for r in batch.results if not r.ok]
    if failed:
        names = ", ".join(f"{r.format} {r.precision}" for r in failed)
        err.print(
            f"[red]error:[/] {names} lost more than --max-iou-drop {args.max_iou_drop} mean "
            "IoU against the Keras model, or changed the class of images it is sure of (the "
            "table's status says which); the file was not written. Calibrate on more or "
            "more representative data (--calib, --calib-size), lower --calib-screen (e.g. 4) "
            "if a few images have extreme activations, try --per-channel (and --method "
            "entropy for ONNX), or raise --max-iou-drop.",
            highlight=False,
        )
        return 1
    return 0


def _interrupted(err: Any, reason: str) -> int:
    err.print(f"[red]interrupted[/] ({reason}): no partial model file was left behind")
    return stop_exit_code(reason)


def _model_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--model", required=True, help="run directory (holding model.keras) or a .keras file"
    )


def _format_cli(fmt: str, argv: list[str] | None) -> int:
    entry = FORMATS[fmt]
    ap = parser(
        f"python -m export.{fmt}", f"Export a Keras localizer to a verified {entry.label} model."
    )
    _model_arg(ap)
    ap.add_argument(
        "--out", default=None, help=f"output file (default: RUN/model_<precision>.{fmt})"
    )
    ap.add_argument("--quantize", default="none", choices=entry.quantize, help="precision")
    ap.add_argument("--io", default="uint8", choices=IO_TYPES, help=IO_HELP)
    if entry.options == "onnx":
        add_onnx_args(ap)
    add_data_args(ap)
    args = ap.parse_args(argv)
    return run_cli(args, [(fmt, args.quantize)], out=args.out)


def main_tflite(argv: list[str] | None = None) -> int:
    """``python -m export.tflite``: one verified TFLite export."""
    return _format_cli("tflite", argv)


def main_onnx(argv: list[str] | None = None) -> int:
    """``python -m export.onnx``: one verified ONNX export."""
    return _format_cli("onnx", argv)


def main_export(argv: list[str] | None = None) -> int:
    """``python -m export``: every (format, precision) pair, one table."""
    ap = parser(
        "python -m export", "Export a Keras localizer to TFLite and ONNX in several precisions."
    )
    _model_arg(ap)
    ap.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma list of {', '.join(FORMATS)} (default all)",
    )
    takes = "; ".join(f"{e.label}: {', '.join(e.quantize)}" for e in FORMATS.values())
    ap.add_argument(
        "--quantize",
        default="none,int8",
        help=f"comma list of {', '.join(all_quantize())} ({takes}; default none,int8)",
    )
    ap.add_argument(
        "--out-dir", default=None, help="folder for the files (default: next to the model)"
    )
    ap.add_argument("--io", default="uint8", choices=IO_TYPES, help=IO_HELP)
    add_onnx_args(ap)
    add_data_args(ap)
    args = ap.parse_args(argv)
    return run_cli(args, out_dir=args.out_dir)


def main_make_models(argv: list[str] | None = None) -> int:
    """``python -m export.make_models``: the runtime's four default model files."""
    from rich.console import Console

    ap = parser(
        "python -m export.make_models", "Export a trained run into the runtime's default models."
    )
    ap.add_argument(
        "--run",
        default=make_models.DEFAULT_RUN,
        help=f"trained run directory (default {make_models.DEFAULT_RUN})",
    )
    ap.add_argument(
        "--out-dir",
        "--out",
        dest="out_dir",
        default=str(make_models.default_dir()),
        help="folder for the model files (default: the runtime's models folder, %(default)s)",
    )
    ap.add_argument("--name", default=None, help="file name stem (default: the run's object class)")
    add_data_args(ap)
    args = ap.parse_args(argv)
    try:
        check_not_empty(args)
        if args.name is not None and not make_models.is_stem(args.name):
            raise UserError(f"--name {args.name!r} must be a plain file name stem (no folder "
                            "parts, not hidden), e.g. --name cat")
    except UserError as e:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    run = Path(args.run)
    if not (run / "model.keras").is_file():
        Console(stderr=True).print(
            f"[red]error:[/] no trained model at {run}/model.keras; train "
            "the demo first (make demo) or pass --run RUN_DIR",
            highlight=False, soft_wrap=True,
        )
        return 2
    try:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file of that name, or no permission
        Console(stderr=True).print(f"[red]error:[/] cannot use --out-dir {args.out_dir} as a "
                                   f"folder ({err.strerror}); pass another one", highlight=False,
                                   soft_wrap=True)
        return 2
    args.model, args.io = str(run), "uint8"
    stem = args.name or make_models.default_name(run)
    return run_cli(args, make_models.JOBS, out_dir=args.out_dir, stem=stem)
