"""Abuse edgeloc as a hostile but fair user would; count what happens (issue 12).

    python -m benchmarks.abuse --mutants 300 --markdown results/abuse.md

Part 1, damaged models: each default model (int8 and fp32, TFLite and ONNX) as exported
(sealed: the digest embedded) and a copy without its digest (what every model was before
the digest, and what other tools' files are) each get ``--mutants`` damaged copies
(byte flips, zeroed ranges, truncations), loaded and run in worker processes. Outcomes per
model: clear error / correct / silently different / traceback / crash / hang. The target
for sealed files: 0 silently different, 0 crashes, 0 hangs, 0 tracebacks.

Part 2, the findings: each one replayed through the CLIs in a subprocess (overwritten
inputs, dropped frames, NaN, truncated and huge images, special files, absurd flags,
tracebacks, Ctrl-C and SIGTERM, the MJPEG server's limits, IPv6).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _findings
from benchmarks._mutants import OUTCOMES, fuzz
from benchmarks._sealed import sealed_copy, unsealed_bytes
from runtime.atomic import refuse_overwrite, scratch_dir, write_text
from runtime.errors import UserError
from runtime.paths import check_output_file

ROOT = Path(__file__).resolve().parent.parent


def default_models() -> list[Path]:
    """The four default models beside ``runtime._cli.DEFAULT_MODEL``."""
    from runtime._cli import DEFAULT_MODEL

    folder = DEFAULT_MODEL.parent
    return [folder / f"cat_{p}.{f}" for f in ("tflite", "onnx") for p in ("int8", "fp32")]


def run_fuzz(models: list[Path], count: int, seed: int, folder: Path) -> list[dict[str, Any]]:
    """Part 1: the models sealed (digest checked) and copies without a digest."""
    rows = []
    for model in models:
        sealed = sealed_copy(model, folder / f"sealed_{model.name}")  # an export: as it is
        bare = folder / f"nodigest_{model.name}"
        bare.write_bytes(unsealed_bytes(sealed.read_bytes()))
        for label, path in (("sealed", sealed), ("no digest", bare)):
            t0 = time.perf_counter()
            row = fuzz(path, count, verify=True, seed=seed)
            row.update(model=model.name, file=label, seconds=round(time.perf_counter() - t0, 1))
            rows.append(row)
            print(f"  {model.name} ({label}): {row['counts']}", file=sys.stderr)
    return rows


def run_findings(folder: Path, header_timeout: float) -> dict[str, dict[str, Any]]:
    """Part 2: every finding through the CLIs; name -> {outcome, ok, detail, seconds}."""
    from runtime._cli import DEFAULT_MODEL

    fixtures = _findings.Fixtures(folder / "findings", DEFAULT_MODEL)
    results: dict[str, dict[str, Any]] = {}
    for check in _findings.CHECKS:
        results.update(check(fixtures))
        print(f"  {check.__name__}: done", file=sys.stderr)
    results.update(_findings.server_checks(header_timeout))
    return results


def machine() -> str:
    """CPU model, core count, Python and the engine versions, in one line."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from ai_edge_litert import __version__ as litert
    except ImportError:
        litert = "?"
    import os

    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"ai-edge-litert {litert}, onnxruntime {onnxruntime.__version__}")


def markdown(report: dict[str, Any]) -> str:
    """The report as the markdown BENCHMARKS.md takes."""
    lines = [
        "## Abuse test (issue 12)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Run time: {report['seconds']:.0f} s",
        "",
        (f"### Damaged models ({report['mutants']} mutants per file: byte flips, zeroed "
         "ranges of 1 B-4 KiB, truncations)"),
        "",
        ("*sealed*: the default model as exported (its digest embedded); *no digest*: a "
         "copy with the digest and the contract's claim renamed away (same-length edits), "
         "which is what every model was before the digest and what other tools' files are."),
        "",
        "| model | file | " + " | ".join(OUTCOMES) + " |",
        "|---|---|" + "---:|" * len(OUTCOMES),
    ]
    for row in report["fuzz"]:
        counts = " | ".join(str(row["counts"][o]) for o in OUTCOMES)
        lines.append(f"| {row['model']} | {row['file']} | {counts} |")
    worst = [f"- {r['model']}: {r['worst']}" for r in report["fuzz"] if r.get("worst")]
    if worst:
        lines += ["", "Worst silently different answer per file (no digest):", "", *worst]
    refused = next((r["examples"].get("clear error", [""])[0] for r in report["fuzz"]
                    if r["file"] == "sealed"), "")
    if refused:
        lines += ["", f"A refused mutant says: `{refused.split(': ', 1)[1][:240]}`"]
    if report["findings"]:
        lines += ["", "### Findings replayed through the CLIs", "",
                  "| finding | fixed | outcome | what happened |", "|---|---|---|---|"]
        for name, r in report["findings"].items():
            detail = str(r["detail"]).replace("|", "\\|")
            lines.append(f"| {name} | {'yes' if r['ok'] else '**NO**'} | {r['outcome']} | "
                         f"{detail} |")
    return "\n".join(lines) + "\n"


def check_inputs(args: argparse.Namespace) -> list[Path]:
    """The models to damage (each must load undamaged) and the output files, before the run:
    --markdown or --json onto a model would destroy it, and a missing folder would lose
    the report at the end."""
    from runtime.contract import model_files
    from runtime.localizer import Localizer

    models = args.model or default_models()
    if not args.skip_fuzz:
        for model in models:
            Localizer.load(model, threads=1)  # UserError: missing, a FIFO, damaged, not a model
    outputs = [(flag, path) for flag, path in (("--markdown", args.markdown), ("--json", args.json))
               if path is not None]
    for flag, path in outputs:
        check_output_file(path, flag)
        refuse_overwrite(path, model_files(models), flag)
    if len(outputs) == 2 and args.markdown.resolve() == args.json.resolve():
        raise UserError(f"--markdown and --json are both {args.json}; pass two file names")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abuse",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=300, help="damaged copies per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", type=Path,
                        help="model(s) to damage (default: the four default models)")
    parser.add_argument("--skip-findings", action="store_true", help="part 1 only")
    parser.add_argument("--skip-fuzz", action="store_true", help="part 2 only")
    parser.add_argument("--header-timeout", type=float, default=5.0,
                        help="the MJPEG server's header deadline in the server checks (5)")
    parser.add_argument("--markdown", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="also write the raw report here")
    _findings.let_ctrl_c_through()  # the Ctrl-C findings need it when started with `&`
    args = parser.parse_args(argv)
    if args.skip_fuzz and args.skip_findings:
        parser.error("--skip-fuzz and --skip-findings leave nothing to run; pass at most one")
    if not args.skip_fuzz and args.mutants < 1:  # 0 mutants: a table of zeros that "passes"
        parser.error(f"--mutants must be at least 1, got {args.mutants}")
    if not 0 < args.header_timeout <= 600:  # NaN or inf: the server checks would wait forever
        parser.error(f"--header-timeout must be 0-600 seconds, got {args.header_timeout}")
    try:
        models = check_inputs(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python -m benchmarks.abuse " + " ".join(argv if argv is not None
                                                            else sys.argv[1:]),
        "machine": machine(), "mutants": args.mutants, "fuzz": [], "findings": {},
    }
    with scratch_dir("abuse") as tmp:  # a killed run's copies go on the next run
        if not args.skip_fuzz:
            print("part 1: damaged models", file=sys.stderr)
            report["fuzz"] = run_fuzz(models, args.mutants, args.seed, Path(tmp))
        if not args.skip_findings:
            print("part 2: the findings", file=sys.stderr)
            report["findings"] = run_findings(Path(tmp), args.header_timeout)
    report["seconds"] = time.perf_counter() - t0
    text = markdown(report)
    print(text)
    if args.markdown:
        write_text(args.markdown, text)
    if args.json:
        write_text(args.json, json.dumps(report, indent=1))
    sealed_bad = sum(row["counts"][o] for row in report["fuzz"] if row["file"] == "sealed"
                     for o in ("silently different", "traceback", "crash", "hang"))
    failed = [n for n, r in report["findings"].items() if not r["ok"]]
    return 1 if sealed_bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
