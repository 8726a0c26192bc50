"""Localize the object in image files; one JSON line per image.

    python -m runtime.infer --model runtime/models/cat_int8.tflite photos/ cat.jpg --out r.jsonl

Each line: image, box [x1, y1, x2, y2] in pixels, label, score, present, latency_ms.
An unreadable image becomes a line with an "error" field; the run goes on and the exit
code is 1 when any image failed (0 when all were read).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2

from data.images import IMAGE_EXTS, ImageError, read_image
from runtime._cli import console, fail, resolve_model, setup_logging
from runtime.localizer import Localizer
from runtime.overlay import draw_result

log = logging.getLogger(__name__)


@dataclass
class InferSummary:
    """Counts of a file run."""

    images: int = 0
    found: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


def collect_images(inputs: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders (image extensions only inside folders), keeping order."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            found = sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if not found:
                log.warning("no images in folder %s", path)
            out.extend(found)
        elif path.exists():
            out.append(path)  # an explicit file is tried whatever its extension
        else:
            raise FileNotFoundError(f"input {path} not found; pass image files or folders")
    return out


def _draw_name(path: Path, draw_dir: Path, used: set[str]) -> Path:
    name = path.name if path.suffix.lower() in IMAGE_EXTS else path.name + ".png"
    stem, suffix, i = Path(name).stem, Path(name).suffix, 1
    while name in used:  # same file name from two folders: number the later ones
        name, i = f"{stem}_{i}{suffix}", i + 1
    used.add(name)
    return draw_dir / name


def run(
    model: str | Path | Localizer,
    inputs: Iterable[str | Path],
    out: IO[str],
    *,
    draw: str | Path | None = None,
    threshold: float = 0.5,
    recursive: bool = False,
    threads: int | None = None,
    backend: str = "auto",
    providers: Any = None,
) -> InferSummary:
    """Write one JSON line per image to ``out``; unreadable images become error lines."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    images = collect_images(inputs, recursive)
    if not images:
        raise FileNotFoundError("no images to process; pass image files or folders with images")
    draw_dir = Path(draw).expanduser() if draw else None
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    loc = (
        model
        if isinstance(model, Localizer)
        else Localizer.load(model, backend, threads, providers, threshold=threshold)
    )
    loc.threshold = threshold
    summary, used = InferSummary(), set()
    for path in images:
        summary.images += 1
        record: dict[str, Any] = {"image": str(path)}
        try:
            image = read_image(path, bgr=True)
        except ImageError as err:
            image, record["error"] = None, str(err)
        if image is not None:
            try:
                result = loc.predict(image, bgr=True)
                record.update(result.to_dict(), width=image.shape[1], height=image.shape[0])
                summary.found += int(result.present)
                summary.latency_ms.append(result.latency_ms)
                if draw_dir is not None:
                    target = _draw_name(path, draw_dir, used)
                    if not cv2.imwrite(str(target), draw_result(image, result)):
                        log.warning("could not write %s", target)
            except Exception as err:  # a model error on one image must not end the run
                record["error"] = f"{type(err).__name__}: {err}"
        if "error" in record:
            summary.errors.append((str(path), record["error"]))
        out.write(json.dumps(record) + "\n")
    return summary


def _print_summary(summary: InferSummary, out_name: str) -> None:
    import numpy as np
    from rich.table import Table

    lat = np.array(summary.latency_ms) if summary.latency_ms else np.array([np.nan])
    table = Table(title="edgeloc infer", show_header=False, title_justify="left")
    table.add_row("images", str(summary.images))
    table.add_row("object present", str(summary.found))
    table.add_row("errors", str(len(summary.errors)))
    table.add_row(
        "latency p50 / p95", f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 95):.2f} ms"
    )
    table.add_row("results", out_name)
    console.print(table)
    for path, err in summary.errors[:20]:
        console.print(f"[yellow]unreadable:[/] {path}: {err}", highlight=False)
    if len(summary.errors) > 20:
        console.print(f"... and {len(summary.errors) - 20} more (see the results file)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.infer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("inputs", nargs="+", help="image files and/or folders")
    parser.add_argument(
        "--model", help="a .tflite or .onnx model (default: runtime/models/cat_int8.tflite)"
    )
    parser.add_argument("--out", default="-", help="JSON lines file ('-' = stdout, the default)")
    parser.add_argument("--draw", help="folder for copies of the images with the box drawn")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="present = score >= this (0.5)"
    )
    parser.add_argument("--recursive", action="store_true", help="also look in subfolders")
    parser.add_argument("--threads", type=int, help="engine threads (default: cores, at most 4)")
    parser.add_argument("--backend", default="auto", help="auto, tflite, onnx or a backend name")
    parser.add_argument("--providers", help="ONNX Runtime providers: cuda,tensorrt,openvino,coreml")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        out_path = None if args.out == "-" else Path(args.out).expanduser()
        if out_path is not None and not out_path.parent.is_dir():
            raise FileNotFoundError(
                f"folder {out_path.parent} for --out does not exist; create it first"
            )
        collect_images(args.inputs, args.recursive)  # fail on a bad path before writing anything
        loc = Localizer.load(resolve_model(args.model), args.backend, args.threads, args.providers)
        out = sys.stdout if out_path is None else out_path.open("w", encoding="utf-8")
        try:
            summary = run(
                loc,
                args.inputs,
                out,
                draw=args.draw,
                threshold=args.threshold,
                recursive=args.recursive,
            )
        finally:
            if out is not sys.stdout:
                out.close()
    except (ValueError, FileNotFoundError) as err:
        return fail(err)
    _print_summary(summary, args.out if out_path else "stdout")
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
