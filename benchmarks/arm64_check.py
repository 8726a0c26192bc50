"""Raspberry-Pi-class proof: the lean runtime on arm64 (emulated) must agree with x86.

    python -m benchmarks.arm64_check [--models DIR_OR_FILES...] [--cpus pi5,pi4]

Builds (cached, see ``benchmarks.arm64_root``) a Debian bookworm arm64 userland, the
userland Raspberry Pi OS 64-bit is built on, with the aarch64 wheels of ``.[runtime]``
and a copy of ``runtime/``; runs ``python -m runtime.infer`` with each model on a fixed
set of generated images and the ``--profile pi`` latency preset, under
``qemu-aarch64-static`` with a Pi 5 (Cortex-A76) and a Pi 4 (Cortex-A72) CPU model; runs
the same on the host and compares per image: same label, box IoU >= 0.98, score within
0.03. Exits 1 on any mismatch or failure. Every arm64 timing is EMULATED: qemu translates
each instruction, so those numbers say nothing about a Pi's speed.
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

import numpy as np

from benchmarks import arm64_root
from runtime.contract import box_iou

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("models/cat_int8.tflite", "models/cat_int8.onnx")
MODEL_SUFFIXES = (".tflite", ".onnx")
IOU_MIN = 0.98
SCORE_TOL = 0.03  # int8 kernels on ARM may round a few quantization steps differently
EMULATED = "EMULATED under qemu on x86: not a speed figure"
TIMING_KEYS = ("latency_ms", "total_ms")


@dataclass
class Row:
    """One image, one model, one emulated board: x86 vs arm64."""

    model: str
    cpu: str
    image: str
    x86_label: str | None = None
    arm64_label: str | None = None
    x86_score: float | None = None
    arm64_score: float | None = None
    x86_box: list[float] | None = None
    arm64_box: list[float] | None = None
    iou: float | None = None
    x86_ms: float | None = None
    arm64_ms_emulated: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the two runs agree."""
        return not self.problems


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a ``runtime.infer`` results file (one JSON object per line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _timing(record: dict[str, Any]) -> float | None:
    for key in TIMING_KEYS:
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def compare(x86: list[dict[str, Any]], arm: list[dict[str, Any]], *, model: str, cpu: str,
            iou_min: float = IOU_MIN, score_tol: float = SCORE_TOL) -> list[Row]:
    """Match records by image file name and check label, box IoU and score."""
    by_name = {Path(r["image"]).name: r for r in arm if "image" in r}
    rows = []
    for rec in x86:
        name = Path(rec["image"]).name
        row = Row(model, cpu, name, x86_label=rec.get("label"), x86_score=rec.get("score"),
                  x86_box=rec.get("box"), x86_ms=_timing(rec))
        other = by_name.pop(name, None)
        if other is None:
            row.problems.append("no arm64 result")
        else:
            row.arm64_label, row.arm64_score = other.get("label"), other.get("score")
            row.arm64_box, row.arm64_ms_emulated = other.get("box"), _timing(other)
            row.problems += _differences(row, rec, other, iou_min, score_tol)
        rows.append(row)
    rows += [Row(model, cpu, name, problems=["no x86 result"]) for name in sorted(by_name)]
    return rows


def _differences(row: Row, x86: dict[str, Any], arm: dict[str, Any], iou_min: float,
                 score_tol: float) -> list[str]:
    problems = [f"{side} error: {rec['error']}" for side, rec in (("x86", x86), ("arm64", arm))
                if rec.get("error")]
    if problems:
        return problems
    if row.x86_label != row.arm64_label:
        problems.append(f"label {row.x86_label!r} != {row.arm64_label!r}")
    if x86.get("present") != arm.get("present"):
        problems.append(f"present {x86.get('present')} != {arm.get('present')}")
    if row.x86_box is None or row.arm64_box is None:
        problems.append("box missing")
    else:
        row.iou = float(box_iou(np.asarray(row.x86_box), np.asarray(row.arm64_box)))
        if row.iou < iou_min:
            problems.append(f"box IoU {row.iou:.3f} < {iou_min}")
    if row.x86_score is None or row.arm64_score is None:
        problems.append("score missing")
    elif abs(row.x86_score - row.arm64_score) > score_tol:
        problems.append(f"score differs by {abs(row.x86_score - row.arm64_score):.3f} > {score_tol}")
    return problems


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(rows: list[Row], model: str) -> Any:
    """A rich table of one model's comparison; arm64 timings are labelled as emulated."""
    from rich.table import Table

    table = Table(title=f"{model}: x86 vs arm64", caption=f"arm64 ms: {EMULATED}")
    for col in ("board", "image", "label", "score x86", "score arm64", "IoU", "x86 ms",
                "arm64 ms (EMULATED)", "result"):
        table.add_column(col, justify="left" if col in ("board", "image", "label", "result")
                         else "right")
    for r in (r for r in rows if r.model == model):
        label = r.x86_label if r.x86_label == r.arm64_label else f"{r.x86_label} / {r.arm64_label}"
        table.add_row(r.cpu, r.image, str(label), _fmt(r.x86_score, ".4f"),
                      _fmt(r.arm64_score, ".4f"), _fmt(r.iou, ".4f"), _fmt(r.x86_ms, ".2f"),
                      _fmt(r.arm64_ms_emulated, ".1f"),
                      "[green]ok[/]" if r.ok else "[red]" + "; ".join(r.problems) + "[/]")
    return table


def latency_table(report: dict[str, Any]) -> Any:
    """The ``--profile pi`` cells of each side: status and p50 (arm64 ones EMULATED)."""
    from rich.table import Table

    table = Table(title="benchmarks.latency --profile pi", caption=f"arm64 ms: {EMULATED}")
    for col in ("run", "variant", "backend", "threads", "status", "p50 ms"):
        table.add_column(col, justify="right" if col in ("threads", "p50 ms") else "left")
    runs = [("x86", report["latency"].get("x86"))] + [
        (f"arm64 {k} (EMULATED)", v["result"]) for k, v in report["latency"]["arm64"].items()]
    for name, result in runs:
        for cell in (result or {}).get("cells", []):
            p50 = (cell.get("latency_ms") or {}).get("p50")
            table.add_row(name, str(cell.get("variant")), str(cell.get("backend")),
                          str(cell.get("threads") or "-"), str(cell.get("status")), _fmt(p50, ".2f"))
    return table


def markdown_table(rows: list[Row]) -> str:
    """The comparison as a Markdown table (for BENCHMARKS.md)."""
    head = ("| model | board | image | label | score x86 | score arm64 | box x86 (px) | "
            "box arm64 (px) | IoU | ok |\n|---|---|---|---|---|---|---|---|---|---|\n")
    def box(b: list[float] | None) -> str:
        return "-" if b is None else ", ".join(f"{v:.1f}" for v in b)
    return head + "".join(
        f"| {r.model} | {r.cpu} | {r.image} | {r.x86_label} / {r.arm64_label} | "
        f"{_fmt(r.x86_score, '.4f')} | {_fmt(r.arm64_score, '.4f')} | {box(r.x86_box)} | "
        f"{box(r.arm64_box)} | {_fmt(r.iou, '.4f')} | {'yes' if r.ok else 'NO'} |\n" for r in rows)


def mark_emulated(result: Any) -> dict[str, Any]:
    """Wrap a result from the emulated run so no reader can take its timings as real."""
    return {"emulated": True, "timing_note": EMULATED, "result": result}


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
    suites: list[str]
    cpus: list[str]
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
    check = Check(models, suites, cpus, repo, work, make_images(work / "images"), iou_min, score_tol)
    check.report = {
        "schema": "edgeloc.arm64_check", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m benchmarks.arm64_check " + " ".join(sys.argv[1:]),
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
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
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
                check.rows += compare(x86[model.name], read_jsonl(out), model=model.name, cpu=target,
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

    parser = argparse.ArgumentParser(prog="python -m benchmarks.arm64_check", description=__doc__
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
    except ValueError as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    try:
        report, rows = run(models, suites=suites, cpus=cpus, repo=repo, cache=args.cache, out=args.out,
                     iou_min=args.iou_min, score_tol=args.score_tol, latency_runs=args.latency_runs)
    except arm64_root.ArmRootError as err:
        console.print(f"[red]arm64 check FAILED: could not prepare the emulated Pi[/]\n{err}")
        return 1
    for model in dict.fromkeys(r.model for r in rows):
        console.print(render_table(rows, model))
    if report["latency"].get("x86") or report["latency"]["arm64"]:
        console.print(latency_table(report))
    if args.markdown:
        args.markdown.write_text(markdown_table(rows))
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
