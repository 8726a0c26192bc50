"""Raspberry-Pi-class proof: the lean runtime on arm64 (emulated) must agree with x86.

    python -m tools.pi.arm64_check [--models DIR_OR_FILES...] [--suites bookworm,trixie]
                                   [--cpus pi5,pi4]

Builds (cached, see ``tools.pi.arm64_root``) the Debian arm64 userlands Raspberry Pi OS
64-bit is made of (bookworm: Python 3.11, trixie: Python 3.13) with the aarch64 wheels of
``.[runtime]`` and a copy of ``runtime/`` and ``data/``; runs ``python -m runtime.infer`` with each
model on a fixed set of generated images, and the ``--profile pi`` latency preset, under
``qemu-aarch64-static`` as a Pi 5 (Cortex-A76) and a Pi 4 (Cortex-A72); runs the same on
the host and compares per image (``tools.pi.arm64_compare``): same label, box IoU >=
0.98, score within 0.03. Exits 1 on any mismatch or failure. Every arm64 timing is
EMULATED: qemu translates each instruction, so those numbers say nothing about a Pi's speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.atomic import write_json, write_text
from runtime.backends import SUFFIXES as MODEL_SUFFIXES
from runtime.models import MODELS_DIR
from tools.pi import arm64_root
from tools.pi.arm64_compare import (EMULATED, IOU_MIN, SCORE_TOL, Row, compare, latency_table,
                                    mark_emulated, markdown_table, read_jsonl, render_table)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = (str(MODELS_DIR / "cat_int8.tflite"), str(MODELS_DIR / "cat_int8.onnx"))


# (background, width, height, cat height as a fraction of the image or 0 = none, x, y, ext)
IMAGES = (
    ("coffee", 640, 480, 0.55, 0.08, 0.30, ".png"),
    ("rocket", 640, 480, 0.40, 0.55, 0.10, ".png"),
    ("brick", 480, 640, 0.35, 0.20, 0.45, ".png"),
    ("grass", 320, 240, 0.70, 0.30, 0.15, ".png"),
    ("gravel", 800, 600, 0.25, 0.65, 0.65, ".jpg"),
    ("camera", 500, 375, 0.60, 0.05, 0.05, ".jpg"),
    ("chelsea", 640, 426, 0.0, 0.0, 0.0, ".png"),  # the original cat photo
    ("coffee", 640, 480, 0.0, 0.0, 0.0, ".jpg"),  # no cat
)


def make_images(out: Path) -> list[Path]:
    """Write the fixed test images (cats pasted on scikit-image scenes; PNG and JPEG)."""
    import cv2
    from skimage import data

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cat = data.chelsea()  # (300, 451, 3) RGB
    paths = []
    for i, (bg, w, h, frac, fx, fy, ext) in enumerate(IMAGES):
        scene = getattr(data, bg)()
        scene = cv2.cvtColor(scene, cv2.COLOR_GRAY2RGB) if scene.ndim == 2 else scene[..., :3]
        image = cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA)  # (h, w, 3)
        if frac > 0:
            ch = int(h * frac)
            cw = int(ch * cat.shape[1] / cat.shape[0])
            x, y = int(fx * (w - cw)), int(fy * (h - ch))
            image[y:y + ch, x:x + cw] = cv2.resize(cat, (cw, ch), interpolation=cv2.INTER_AREA)
        path = out / f"{i}-{bg}-{'cat' if frac > 0 or bg == 'chelsea' else 'none'}{ext}"
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else []
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths


def resolve_models(specs: list[str], repo: Path) -> list[Path]:
    """Model files from files or folders (all .tflite/.onnx inside); ValueError when none."""
    models: list[Path] = []
    for spec in specs:
        if not spec.strip():  # Path("") is the current folder
            raise ValueError("--models got an empty name; pass model files or a folder")
        path = Path(spec) if Path(spec).is_absolute() else (Path.cwd() / spec)
        if not path.exists() and (repo / spec).exists():
            path = repo / spec
        if path.is_dir():
            models += sorted(p for p in path.iterdir() if p.suffix in MODEL_SUFFIXES)
        elif path.is_file() and path.suffix in MODEL_SUFFIXES:
            models.append(path)
        else:
            raise ValueError(f"model {spec} not found (or not .tflite/.onnx); run `make models` "
                             "or pass --models DIR")
    if not models:
        raise ValueError(f"no .tflite or .onnx model in {', '.join(specs)}; pass --models DIR")
    return [m.resolve() for m in models]


def check_flags(args: argparse.Namespace, models: list[Path]) -> None:
    """Thresholds, the models and the output paths before minutes of building the emulated
    Pis: a damaged model would only fail there, a report onto a model would destroy it."""
    from runtime.atomic import refuse_overwrite
    from runtime.contract import model_files
    from runtime.localizer import Localizer

    if not (0 <= args.iou_min <= 1 and 0 <= args.score_tol <= 1):  # NaN fails both
        raise ValueError(f"--iou-min and --score-tol must be within 0-1, got {args.iou_min} "
                         f"and {args.score_tol}")
    if not 0 <= args.latency_runs <= 10_000:
        raise ValueError(f"--latency-runs must be 0-10000 (0 skips it), got {args.latency_runs}")
    for model in models:
        Localizer.load(model, threads=1)  # UserError: damaged, not a model, a FIFO
    outputs = [(f, p) for f, p in (("--out", args.out), ("--markdown", args.markdown)) if p]
    for flag, path in [*outputs, ("--cache", args.cache / "run")]:
        path = path.expanduser()
        file = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if file is not None:
            raise ValueError(f"{flag} {path}: {file} is a file, not a folder; pass another path")
    for flag, path in outputs:
        if path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; pass a file name")
        refuse_overwrite(path, model_files(models), flag)
    if len(outputs) == 2 and args.out.resolve() == args.markdown.resolve():
        raise ValueError(f"--out and --markdown are both {args.out}; pass two file names")


def _tail(proc: subprocess.CompletedProcess[str], n: int = 15) -> str:
    return "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-n:])


def _host_run(repo: Path, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    try:
        return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"timed out after {timeout:.0f} s")


def latency_args(models: Path, runs: int, out: Path, device: str) -> list[str]:
    """``benchmarks.latency --profile pi`` on a models folder, shortened to ``runs`` timed calls."""
    return ["-m", "benchmarks.latency", "--profile", "pi", "--model", str(models), "--runs",
            str(runs), "--warmup", "1", "--out", str(out), "--no-plots", "--device-name", device]


@dataclass
class Check:
    """What one check run compares and where it writes."""

    models: list[Path]
    repo: Path
    work: Path
    images: list[Path]
    iou_min: float
    score_tol: float
    report: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def fail(self, text: str) -> None:
        """Record a run that did not complete."""
        self.report["failures"].append(text)


def run(models: list[Path], *, suites: list[str], cpus: list[str], repo: Path = REPO,
        cache: Path = REPO / ".cache/arm64", out: Path = REPO / "results/arm64_check.json",
        iou_min: float = IOU_MIN, score_tol: float = SCORE_TOL, latency_runs: int = 3
        ) -> tuple[dict[str, Any], list[Row]]:
    """Build the emulated Pis, run both sides, compare; (report, rows); ``report["passed"]``."""
    t0 = time.perf_counter()
    userlands = [arm64_root.get_userland(s) for s in suites]
    boards = {c: arm64_root.get_cpu(c) for c in cpus}
    guests = [arm64_root.prepare(cache, repo, models, u) for u in userlands]  # ArmRootError
    setup_s = time.perf_counter() - t0
    work = cache.resolve() / "run"
    check = Check(models, repo, work, make_images(work / "images"), iou_min, score_tol)
    check.report = {
        "schema": "edgeloc.arm64_check", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m tools.pi.arm64_check " + " ".join(sys.argv[1:]),
        "thresholds": {"iou_min": iou_min, "score_tol": score_tol},
        "images": [p.name for p in check.images],
        "x86": {"machine": platform.machine(), "python": platform.python_version()},
        "arm64": {"emulated": True, "timing_note": EMULATED,
                  "boards": {c: asdict(b) for c, b in boards.items()}, "userlands": {}},
        "failures": [], "latency": {"x86": None, "arm64": {}},
    }
    x86 = _x86_runs(check)
    for guest in guests:
        _arm_runs(check, guest, boards, x86)
    if latency_runs > 0:
        _latency(check, guests, boards, latency_runs)
    report = check.report
    report["rows"] = [{**asdict(r), "ok": r.ok} for r in check.rows]
    report["passed"] = bool(check.rows) and all(r.ok for r in check.rows) and not report["failures"]
    report["setup_s"] = round(setup_s, 1)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report, indent=1)
    return report, check.rows


def _infer_args(model: Path, images: list[Path], out: Path) -> list[str]:
    return ["-m", "runtime.infer", "--model", str(model), *map(str, images), "--out", str(out)]


def _x86_runs(check: Check) -> dict[str, list[dict[str, Any]]]:
    """``runtime.infer`` on the host for each model: model name -> records."""
    results = {}
    for model in check.models:
        out = check.work / f"x86-{model.name}.jsonl"
        proc = _host_run(check.repo, _infer_args(model, check.images, out))
        if proc.returncode != 0:
            check.fail(f"x86 runtime.infer {model.name} failed (exit {proc.returncode}):\n{_tail(proc)}")
        else:
            results[model.name] = read_jsonl(out)
    return results


def _arm_runs(check: Check, guest: arm64_root.Guest, boards: dict[str, arm64_root.CpuProfile],
              x86: dict[str, list[dict[str, Any]]]) -> None:
    """Probe the emulated userland, then ``runtime.infer`` per board and model, compared to x86."""
    suite = guest.userland.suite
    probe = guest.run(next(iter(boards.values())), ["-c", arm64_root.PROBE])
    if probe.returncode != 0:
        check.fail(f"arm64 {suite}: runtime dependencies do not import:\n{_tail(probe)}")
        return
    versions = json.loads(probe.stdout.strip().splitlines()[-1])
    check.report["arm64"]["userlands"][suite] = {**asdict(guest.userland), "versions": versions}
    for name, board in boards.items():
        target = f"{name} {suite}"
        for model, guest_model in zip(check.models, guest.models):
            out = check.work / f"arm64-{suite}-{name}-{model.name}.jsonl"
            out.unlink(missing_ok=True)
            proc = guest.run(board, _infer_args(guest_model, check.images, out))
            if proc.returncode != 0 or not out.exists():
                check.fail(f"arm64 ({target}) runtime.infer {model.name} failed (exit "
                           f"{proc.returncode}):\n{_tail(proc)}")
            elif model.name in x86:
                check.rows += compare(x86[model.name], read_jsonl(out), model=model.name, target=target,
                                      iou_min=check.iou_min, score_tol=check.score_tol)


def _latency(check: Check, guests: list[arm64_root.Guest],
             boards: dict[str, arm64_root.CpuProfile], runs: int) -> None:
    """The ``--profile pi`` preset on x86 and on the first board of each userland (emulated)."""
    models_dir = guests[0].models[0].parent  # the copies of --models, all in one folder
    out = check.work / "latency-x86.json"
    proc = _host_run(check.repo, latency_args(models_dir, runs, out, "x86 host"))
    if proc.returncode != 0 or not out.exists():
        check.fail(f"x86 latency --profile pi failed (exit {proc.returncode}):\n{_tail(proc)}")
    else:
        check.report["latency"]["x86"] = json.loads(out.read_text())
    name, board = next(iter(boards.items()))
    for guest in guests:
        target = f"{name} {guest.userland.suite}"
        out = check.work / f"latency-arm64-{guest.userland.suite}-{name}.json"
        out.unlink(missing_ok=True)
        proc = guest.run(board, latency_args(guest.models[0].parent, runs, out,
                                             f"arm64 {target} EMULATED"))
        if proc.returncode != 0 or not out.exists():
            check.fail(f"arm64 ({target}) latency --profile pi failed (exit {proc.returncode}):"
                       f"\n{_tail(proc)}")
            continue
        result = json.loads(out.read_text())
        if not any(c.get("status") == "ok" for c in result.get("cells", [])):
            check.fail(f"arm64 ({target}) latency --profile pi measured no cell: {out}")
        check.report["latency"]["arm64"][target] = mark_emulated(result)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags, run the check, print the table; 0 = arm64 agrees with x86."""
    from rich.console import Console
    from rich.markup import escape

    parser = argparse.ArgumentParser(prog="python -m tools.pi.arm64_check", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="model files or folders (default: the int8 default models)")
    parser.add_argument("--suites", default="bookworm,trixie",
                        help=f"Debian userlands, comma-separated ({', '.join(arm64_root.USERLANDS)})")
    parser.add_argument("--cpus", default="pi5,pi4",
                        help=f"emulated boards, comma-separated ({', '.join(arm64_root.CPUS)})")
    parser.add_argument("--iou-min", type=float, default=IOU_MIN)
    parser.add_argument("--score-tol", type=float, default=SCORE_TOL)
    parser.add_argument("--latency-runs", type=int, default=3,
                        help="timed calls of the --profile pi preset per model (0 = skip)")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="project checkout whose runtime/ is tested (default: this one)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache/arm64")
    parser.add_argument("--out", type=Path, default=REPO / "results/arm64_check.json")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        cpus = [c.strip() for c in args.cpus.split(",") if c.strip()]
        suites = [c.strip() for c in args.suites.split(",") if c.strip()]
        for c in cpus:
            arm64_root.get_cpu(c)
        for c in suites:
            arm64_root.get_userland(c)
        if not cpus or not suites:
            raise ValueError("--cpus and --suites need at least one name each")
        repo = args.repo.resolve()
        if not (repo / "runtime").is_dir():
            raise ValueError(f"--repo {args.repo} has no runtime/ folder; pass a project checkout")
        models = resolve_models(args.models, repo)
        check_flags(args, models)
    except ValueError as err:  # UserError too
        console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True)
        return 2
    try:
        report, rows = run(models, suites=suites, cpus=cpus, repo=repo, cache=args.cache,
                           out=args.out, iou_min=args.iou_min, score_tol=args.score_tol,
                           latency_runs=args.latency_runs)
    except arm64_root.ArmRootError as err:
        console.print(f"[red]arm64 check FAILED: could not prepare the emulated Pi[/]\n{err}")
        return 1
    for model in dict.fromkeys(r.model for r in rows):
        console.print(render_table(rows, model))
    if report["latency"].get("x86") or report["latency"]["arm64"]:
        console.print(latency_table(report))
    if args.markdown:
        write_text(args.markdown, markdown_table(rows))
    for failure in report["failures"]:
        console.print(f"[red]FAILED:[/] {failure}")
    bad = [r for r in rows if not r.ok]
    verdict = "[green]PASSED[/]" if report["passed"] else "[red]FAILED[/]"
    console.print(f"arm64 check {verdict}: {len(rows) - len(bad)}/{len(rows)} comparisons agree, "
                  f"{len(report['failures'])} failed runs; setup {report['setup_s']} s, total "
                  f"{report['total_s']} s; report {args.out} (arm64 timings: {EMULATED})")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
