"""What the three export CLIs share: flags, the export loop, the summary table, exit codes.

Exit codes: 0 all exports written and verified; 1 an export failed verification (its file
was not written); 2 a user mistake (bad path, file or flag value), one line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from export._graph import quiet_tensorflow
from export._io import ExportResult, VerificationFailed, load_model
from runtime.errors import UserError
from export.calib import DEFAULT_CALIB_SIZE, DEFAULT_SCREEN, calibration_for

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2, one line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description)


def add_common_args(
    ap: argparse.ArgumentParser,
    *,
    out_help: str | None = None,
    model: bool = True,
    out: bool = True,
) -> None:
    """The flags every export CLI shares (``model``/``out``: whether to add --model and --out)."""
    if model:
        ap.add_argument(
            "--model", required=True, help="run directory (holding model.keras) or a .keras file"
        )
    if out:
        ap.add_argument(
            "--out",
            default=None,
            help=out_help or "output file (default: RUN/model_<precision>.<format>)",
        )
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
        "images of a smaller source)",
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
        default=0.02,
        help="fail the export when mean IoU drops more than this vs Keras (default 0.02)",
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
    ap.add_argument("--verify-size", type=int, default=200, help="held-out images (default 200)")
    ap.add_argument(
        "--seed", type=int, default=0, help="seed for drawing calibration/held-out samples"
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress")


def add_onnx_args(ap: argparse.ArgumentParser) -> None:
    """The ONNX int8 flags shared by ``python -m export`` and ``python -m export.onnx``."""
    from export.onnx import DEFAULT_OPSET

    ap.add_argument(
        "--method", default="minmax", help="ONNX int8 calibration: minmax (default), entropy, percentile"
    )
    ap.add_argument("--opset", type=int, default=None, help=f"ONNX opset (default {DEFAULT_OPSET})")
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
        help="ONNX int8 activations: uint8 (default; the same integer graph on x86 and ARM) or "
        "int8 (ONNX Runtime's S8S8; boxes differ between x86 and ARM, overflow on Pi 4)",
    )


ONNX_ONLY = ("method", "opset", "reduce_range", "activations")  # the add_onnx_args flags


def onnx_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``add_onnx_args`` flags for ``run_cli``."""
    return {k: getattr(args, k) for k in ONNX_ONLY}


def run(
    model: Any,
    jobs: list[tuple[str, str]],
    *,
    out: str | None = None,
    out_dir: str | None = None,
    calib: str | None = None,
    calib_dir: str | None = None,
    calib_size: int | None = None,
    calib_screen: float = DEFAULT_SCREEN,
    verify: bool = True,
    max_iou_drop: float = 0.02,
    verify_data: str | None = None,
    verify_dir: str | None = None,
    verify_size: int = 200,
    seed: int = 0,
    console: Any = None,
    stem: str = "model",
    **options: Any,
) -> tuple[list[ExportResult], list[dict]]:
    """Run (format, quantize) exports of one model, sharing calibration and held-out sets.

    Files go to ``out`` (one export), ``out_dir/<stem>_<precision>.<format>``, or next to
    the model.

    Returns (results of the exports that passed, table rows of all, Keras reference first).
    """
    from export import onnx as onnx_export
    from export import tflite as tflite_export
    from export.verify import holdout_set, keras_row, row

    quiet_tensorflow()
    validate(jobs, options)
    loaded = load_model(model)
    if out and len(jobs) > 1:
        raise UserError("--out names one file; with several exports pass --out-dir FOLDER")
    if out_dir is not None:
        folder = Path(out_dir).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"output folder {folder} does not exist; create it or pass another --out-dir"
            )
    calibration = holdout = None
    if any(q == "int8" for _, q in jobs):
        calibration = calibration_for(
            loaded, calib, size=calib_size, data_dir=calib_dir, seed=seed, screen=calib_screen
        )
    if verify:
        holdout = holdout_set(loaded, verify_data, data_dir=verify_dir, size=verify_size, seed=seed)
    rows = (
        [keras_row(holdout, loaded.path.stat().st_size if loaded.path else None)] if holdout else []
    )
    results = []
    for fmt, quantize in jobs:
        export_fn = {"tflite": tflite_export.export_tflite, "onnx": onnx_export.export_onnx}[fmt]
        kwargs = dict(options)
        if fmt == "tflite":
            for key in ONNX_ONLY:
                kwargs.pop(key, None)
        target = out
        if out_dir is not None:
            target = str(Path(out_dir).expanduser() / f"{stem}_{_precision(quantize)}.{fmt}")
        if console is not None:
            console.print(f"[bold]exporting[/] {fmt} {quantize} ...")
        try:
            result = export_fn(
                loaded,
                target,
                quantize=quantize,
                calibration=calibration,
                holdout=holdout,
                verify=verify,
                max_iou_drop=max_iou_drop,
                seed=seed,
                **kwargs,
            )
            results.append(result)
            rows.append(row(result))
        except VerificationFailed as failed:
            rows.append(row(failed.args[0]))
    return results, rows


def validate(jobs: list[tuple[str, str]], options: dict[str, Any]) -> None:
    """Check flag values before the (slow) model load."""
    from export._io import IO_TYPES, check_choice
    from export.onnx import ACTIVATIONS, METHODS, ONNX_QUANTIZE
    from export.quant import TFLITE_QUANTIZE

    valid = {"tflite": TFLITE_QUANTIZE, "onnx": ONNX_QUANTIZE}
    for fmt, quantize in jobs:
        check_choice(fmt, valid, "format")
        check_choice(quantize, valid[fmt], f"{'TFLite' if fmt == 'tflite' else 'ONNX'} --quantize")
    check_choice(options.get("io", "uint8"), IO_TYPES, "--io")
    if any(fmt == "onnx" for fmt, _ in jobs):
        check_choice(options.get("method", "minmax"), METHODS, "calibration --method")
        check_choice(options.get("activations", "uint8"), ACTIVATIONS, "--activations")


def _precision(quantize: str) -> str:
    from export._io import PRECISIONS

    return PRECISIONS.get(quantize, quantize)


def run_cli(
    args: argparse.Namespace, jobs: list[tuple[str, str]], *, stem: str = "model", **options: Any
) -> int:
    """Run the jobs for parsed CLI flags; print the table; map errors to exit codes."""
    from rich.console import Console

    console = Console(stderr=False, width=None if sys.stdout.isatty() else 132)
    err = Console(stderr=True)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        results, rows = run(
            args.model,
            jobs,
            out=getattr(args, "out", None),
            out_dir=getattr(args, "out_dir", None),
            calib=args.calib,
            calib_dir=args.calib_dir,
            calib_size=args.calib_size,
            calib_screen=args.calib_screen,
            verify=not args.no_verify,
            max_iou_drop=args.max_iou_drop,
            verify_data=args.verify_data,
            verify_dir=args.verify_dir,
            verify_size=args.verify_size,
            seed=args.seed,
            console=err,
            stem=stem,
            **options,
        )
    except UserError as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]: no partial model file was left behind")
        return 130
    from export.verify import table

    console.print(table(rows))
    for r in results:
        console.print(f"wrote {r.path}")
    failed = [r for r in rows if str(r.get("status", "")).startswith("FAILED")]
    if failed:
        names = ", ".join(f"{r['format']} {r['precision']}" for r in failed)
        err.print(
            f"[red]error:[/] {names} lost more than --max-iou-drop {args.max_iou_drop} mean "
            "IoU against the Keras model; the file was not written. Calibrate on more or "
            "more representative data (--calib, --calib-size), lower --calib-screen (e.g. 4) "
            "if a few images have extreme activations, try --per-channel (and --method "
            "entropy for ONNX), or raise --max-iou-drop.",
            highlight=False,
        )
        return 1
    return 0
