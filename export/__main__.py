"""Export one model to several formats and precisions with one verification table.

python -m export --model runs/demo --formats tflite,onnx --quantize none,int8
"""

from __future__ import annotations

from runtime.errors import UserError
from export.onnx import ONNX_QUANTIZE
from export.quant import TFLITE_QUANTIZE

FORMATS = {"tflite": TFLITE_QUANTIZE, "onnx": ONNX_QUANTIZE}


def jobs_for(formats: str, quantize: str) -> list[tuple[str, str]]:
    """(format, quantize) pairs; precisions a format lacks (fp16/dynamic for ONNX) are skipped."""
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    precisions = [q.strip() for q in quantize.split(",") if q.strip()]
    for f in fmts:
        if f not in FORMATS:
            raise UserError(f"unknown format {f!r}; valid: {', '.join(FORMATS)}")
    valid = sorted({q for qs in FORMATS.values() for q in qs})
    for q in precisions:
        if q not in valid:
            raise UserError(f"unknown --quantize {q!r}; valid: {', '.join(valid)}")
    jobs = [(f, q) for f in fmts for q in precisions if q in FORMATS[f]]
    if not jobs:
        raise UserError(f"no format supports --quantize {quantize}; ONNX takes none, int8")
    return jobs


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags, export every (format, precision) pair, print one table."""
    from rich.console import Console

    from export._cli import add_common_args, add_onnx_args, onnx_options, parser, run_cli

    ap = parser(
        "python -m export", "Export a Keras localizer to TFLite and ONNX in several precisions."
    )
    ap.add_argument(
        "--formats", default="tflite,onnx", help="comma list of tflite, onnx (default both)"
    )
    ap.add_argument(
        "--quantize",
        default="none,int8",
        help="comma list of none, fp16, dynamic, int8 (fp16/dynamic: TFLite only; "
        "default none,int8)",
    )
    ap.add_argument(
        "--out-dir", default=None, help="folder for the files (default: next to the model)"
    )
    ap.add_argument(
        "--io", default="uint8", help="input dtype: uint8 (raw pixels, default), int8, float32"
    )
    add_onnx_args(ap)
    add_common_args(ap, out=False)
    args = ap.parse_args(argv)
    try:
        jobs = jobs_for(args.formats, args.quantize)
    except UserError as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        return 2
    return run_cli(
        args,
        jobs,
        io=args.io,
        per_channel=args.per_channel,
        **onnx_options(args),
    )


if __name__ == "__main__":
    raise SystemExit(main())
