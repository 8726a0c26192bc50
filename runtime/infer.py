"""Localize the object in image files; one JSON line per image.

    python -m runtime.infer --model runtime/models/cat_int8.tflite photos/ cat.jpg --out r.jsonl

Each line: image, box [x1, y1, x2, y2] in pixels, label, score, present, latency_ms (and
with --draw, drawing: the file the drawing went to).
An image that cannot be read, or on which the model fails or answers NaN, becomes a line
with an "error" field; the run goes on and the exit code is 1 when any image failed (0 when
all were processed). Outputs never replace an input and are written atomically; Ctrl-C
ends with the summary (the results so far are kept) and exit code 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2

from data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTS, ImageError, read_image
from runtime._cli import (
    EXIT_SIGPIPE,
    add_model_args,
    console,
    drop_stdout,
    fail,
    refuse_empty,
    resolve_model,
    setup_logging,
    sigterm_stops,
    stop_exit_code,
    stop_reason,
)
from runtime.contract import sidecar_path
from runtime.errors import ModelError, UserError
from runtime.localizer import Localizer
from runtime.overlay import draw_result
from runtime.atomic import atomic_output, identity, refuse_overwrite
from runtime.paths import check_output_file, check_output_folder, stat_path

log = logging.getLogger(__name__)
# Error kinds as the summary names them: the image, the model, or writing the drawing.
KINDS = {"image": "unreadable", "model": "model failed", "output": "not written"}
# OpenCV writes these from one grey channel only; a drawing is colour, so it goes to .png.
_GREY_ONLY = (".pgm", ".pbm")
# --out names: the results are JSON lines whatever the name; "" is a name without a suffix.
RESULT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt", ".log", "")


class OutputError(UserError):
    """The results could not be written (a full disk, a lost folder): the run stops."""


class _Results:
    """The JSON lines stream: a failed write is one ``OutputError`` naming the output.

    A closed pipe (``| head -1``) stays a ``BrokenPipeError``: ``main`` ends quietly on it.
    """

    def __init__(self, handle: IO[str], name: str):
        self.handle, self.name = handle, name
        self.error: OutputError | None = None

    def write(self, text: str) -> None:
        self._do(self.handle.write, text)

    def flush(self) -> None:
        self._do(self.handle.flush)

    def _do(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            self.error = OutputError(
                f"cannot write the results to {self.name}: {err.strerror or err}; free some "
                "space or pass --out PATH on another disk"
            )
            raise self.error from None


@dataclass
class InferSummary:
    """Counts of a file run; ``errors`` holds (image, kind, message), kind a key of KINDS."""

    images: int = 0
    total: int = 0
    found: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    stopped_by: str = "end of input"


def collect_images(inputs: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders (image extensions only inside folders), keeping order."""
    out: list[Path] = []
    hint = "pass image files or folders"
    for item in inputs:
        if not str(item).strip():  # Path("") is the current folder: never what was meant
            raise UserError(f"an input is an empty name ({str(item)!r}); {hint}")
        path = Path(item).expanduser()
        stat_path(path, "input", hint)  # a symlink loop is not "not found"
        if not path.is_dir():
            out.append(path)  # an explicit file is tried whatever its extension or type
            continue
        try:
            pattern = path.rglob("*") if recursive else path.iterdir()
            found = sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        except OSError as err:
            raise UserError(f"cannot list folder {path}: {err.strerror or err}; {hint}") from None
        if not found:
            log.warning("no images in folder %s", path)
        out.extend(found)
    return out


def _draw_name(path: Path) -> str:
    """The image's own name, or that name + ".png" where OpenCV cannot write a colour
    drawing in its format (a .gif on older OpenCV, a grey-only .pgm, an odd name)."""
    suffix = path.suffix.lower()
    # OpenCV is asked about the suffix only: a name that is not UTF-8 crashes it (segfault).
    if suffix not in IMAGE_EXTS or suffix in _GREY_ONLY or not cv2.haveImageWriter("x" + suffix):
        return path.name + ".png"
    return path.name


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``stem_N.suffix`` with the first N free in ``used`` (case-folded: on
    macOS and Windows a.jpg and A.jpg are one file); the name taken is added to ``used``."""
    stem, suffix, i = Path(name).stem, Path(name).suffix, 1
    while name.casefold() in used:  # same file name from two folders: number the later ones
        name, i = f"{stem}_{i}{suffix}", i + 1
    used.add(name.casefold())
    return name


def draw_targets(images: list[Path], draw_dir: Path) -> list[Path]:
    """The file each image's drawing goes to in ``draw_dir``, in order, one file per image.

    Every name that can stay as it is is reserved first, so a numbered duplicate never
    takes another image's own name (u1/a.jpg, u2/a.jpg, u3/a_1.jpg: u2's drawing is
    a_2.jpg, u3's is a_1.jpg); own names go before ".png"-added ones (g.pgm drawn as
    g.pgm.png never takes an input g.pgm.png's name).
    """
    wanted = [_draw_name(path) for path in images]
    used: set[str] = set()
    names: list[str | None] = [None] * len(images)
    for keep in (True, False):
        for i, (path, name) in enumerate(zip(images, wanted)):
            if (name == path.name) == keep and name.casefold() not in used:
                names[i] = _unique(name, used)
    for i, name in enumerate(wanted):  # the duplicates, numbered past every reserved name
        if names[i] is None:
            names[i] = _unique(name, used)
    return [draw_dir / name for name in names]


def run(
    model: str | Path | Localizer,
    inputs: Iterable[str | Path],
    out: IO[str] | _Results,
    *,
    draw: str | Path | None = None,
    threshold: float = 0.5,
    recursive: bool = False,
    threads: int | None = None,
    backend: str = "auto",
    providers: Any = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    verify: bool = True,
) -> InferSummary:
    """Write one JSON line per image to ``out``; failed images become error lines.

    Ctrl-C (and SIGTERM inside ``sigterm_stops``) ends the loop: the summary says so.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    images = collect_images(inputs, recursive)
    if not images:
        raise UserError("no images to process; pass image files or folders with images")
    loc = (
        model
        if isinstance(model, Localizer)
        else Localizer.load(model, backend, threads, providers, threshold=threshold, verify=verify)
    )
    loc.threshold = threshold
    targets: list[Path | None] = [None] * len(images)
    if draw is not None:
        draw_dir = check_output_folder(draw, "--draw")
        targets = draw_targets(images, draw_dir)
        refuse_overwrite(targets, [*images, loc.path], f"--draw {draw_dir}")
    summary = InferSummary(total=len(images))
    try:
        for path, target in zip(images, targets):
            record = _one(loc, path, target, max_pixels, summary)
            out.write(json.dumps(record, allow_nan=False) + "\n")  # strict JSON, always
            summary.images += 1
    except KeyboardInterrupt as stop:
        summary.stopped_by = stop_reason(stop)
    return summary


# Names that are videos, not images: runtime.webcam --source plays them.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mjpeg", ".mjpg", ".wmv",
                  ".mpg", ".mpeg", ".3gp")


def _one(
    loc: Localizer, path: Path, target: Path | None, max_pixels: int | None, summary: InferSummary
) -> dict[str, Any]:
    """The JSON record of one image; its failure, if any, is added to ``summary``."""
    record: dict[str, Any] = {"image": str(path)}
    kind, drawn = "image", False
    try:
        image = read_image(path, bgr=True, max_pixels=max_pixels)
        kind = "model"
        result = loc.predict(image, bgr=True)
        record.update(result.to_dict(), width=image.shape[1], height=image.shape[0])
        summary.found += int(result.present)
        summary.latency_ms.append(result.latency_ms)
        if target is not None:
            kind = "output"
            ok, data = cv2.imencode(target.suffix, draw_result(image, result))
            if not ok:
                raise UserError(f"OpenCV cannot encode {target.suffix} images")
            with atomic_output(target, "--draw", binary=True) as handle:
                handle.write(data.tobytes())
            drawn = True
    except (ImageError, ModelError) as err:
        record["error"] = str(err)
        if kind == "image" and path.suffix.lower() in VIDEO_SUFFIXES:
            record["error"] += f"; for a video run python -m runtime.webcam --source {path}"
    except (UserError, OSError) as err:  # writing the drawing: a full disk, a lost folder
        kind, record["error"] = "output", f"could not write {target}: {err}"
    if target is not None:  # where the drawing is: a numbered name for a duplicate
        record["drawing"] = str(target) if drawn else None
    if "error" in record:
        summary.errors.append((str(path), kind, record["error"]))
    return record


def _print_summary(summary: InferSummary, out_name: str) -> None:
    import numpy as np
    from rich.markup import escape
    from rich.table import Table

    lat = np.array(summary.latency_ms) if summary.latency_ms else np.array([np.nan])
    table = Table(title="edgeloc infer", show_header=False, title_justify="left")
    table.add_row("images", f"{summary.images} of {summary.total}")
    table.add_row("object present", str(summary.found))
    for kind, label in KINDS.items():
        count = sum(1 for _, k, _ in summary.errors if k == kind)
        if count or kind == "image":
            table.add_row(label, str(count))
    table.add_row(
        "latency p50 / p95", f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 95):.2f} ms"
    )
    table.add_row("results", escape(out_name))
    table.add_row("stopped by", summary.stopped_by)
    console.print(table)
    for path, kind, err in summary.errors[:20]:
        console.print(f"[yellow]{KINDS[kind]}:[/] {escape(path)}: {escape(err)}", highlight=False)
    if len(summary.errors) > 20:
        console.print(f"... and {len(summary.errors) - 20} more (see the results file)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.infer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("inputs", nargs="+", help="image files and/or folders")
    parser.add_argument("--out", default="-", help="JSON lines file ('-' = stdout, the default)")
    parser.add_argument("--draw", help="folder for copies of the images with the box drawn")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="present = score >= this (0.5)"
    )
    parser.add_argument("--recursive", action="store_true", help="also look in subfolders")
    add_model_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        with sigterm_stops():
            summary = _main(args)
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly, as `yes` does
        drop_stdout()
        return EXIT_SIGPIPE
    except UserError as err:
        if isinstance(err, OutputError) and args.out == "-":
            drop_stdout()  # Python's last flush of stdout would fail again, with a traceback
        return fail(err)
    except KeyboardInterrupt as stop:  # before the first image: nothing to summarize
        return stop_exit_code(stop_reason(stop))
    _print_summary(summary, args.out if args.out != "-" else "stdout")
    if summary.stopped_by != "end of input":
        return stop_exit_code(summary.stopped_by)
    return 1 if summary.errors else 0


def _main(args: argparse.Namespace) -> InferSummary:
    refuse_empty(args, {"inputs": "an input"})
    model = resolve_model(args.model, args.backend)
    images = collect_images(args.inputs, args.recursive)  # bad paths fail before any write
    options = {"draw": args.draw, "threshold": args.threshold, "recursive": args.recursive,
               "max_pixels": args.max_pixels}
    inputs = [*images, model, sidecar_path(model)]
    drawings = draw_targets(images, Path(args.draw).expanduser()) if args.draw else []
    if args.out == "-":
        stdout = _stdout_fd()
        if stdout is not None:  # `infer a.jpg >> a.jpg`: the shell opened the input for us
            refuse_overwrite(stdout, inputs, "--out - (stdout)")
            _refuse_drawing_over(stdout, images, drawings)
        loc = Localizer.load(model, args.backend, args.threads, args.providers,
                             verify=not args.no_verify)
        results = _Results(sys.stdout, "stdout")
        summary = run(loc, images, results, **options)
        results.flush()  # here, where a failure is reported, not at interpreter exit
        return summary
    out_path = check_output_file(args.out, "--out")
    refuse_overwrite([out_path], inputs, "--out")
    if out_path.resolve() == sidecar_path(model).resolve():  # not there yet, read next time
        raise UserError(
            f"--out {out_path} is where {model.name}'s contract is looked for on the next run; "
            "write the results under another name"
        )
    _refuse_drawing_over(out_path, images, drawings)
    check_results_name(out_path)
    results = None
    try:
        with atomic_output(out_path, "--out") as out:  # opened first: /proc/version fails here
            results = _Results(out, f"--out {out_path}")
            loc = Localizer.load(model, args.backend, args.threads, args.providers,
                                 verify=not args.no_verify)
            summary = run(loc, images, results, **options)
            results.flush()
            return summary
    except OSError:  # closing a file whose last write failed fails again: the same cause
        if results is None or results.error is None:
            raise
        raise results.error from None


def check_results_name(path: Path) -> Path:
    """Refuse an --out file whose suffix names another format (``res.csv``, ``res.png``):
    the results are JSON lines whatever the name, so such a file would be silently wrong.
    A device or FIFO (``/dev/null``, ``>(...)``) is written whatever its name."""
    suffix = path.suffix.lower()
    special = path.exists() and not path.is_file()
    if suffix not in RESULT_SUFFIXES and not special:
        raise UserError(f"--out {path}: the results are JSON lines, not a {path.suffix} file; "
                        f"name it {path.stem}.jsonl (or {', '.join(RESULT_SUFFIXES[1:-1])}, or "
                        "no extension)")
    return path


def _stdout_fd() -> int | None:
    """stdout's file descriptor (None where stdout is no real file, as under pytest)."""
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _same_file(out: Path | int, drawing: Path) -> bool:
    """Whether ``out`` (a path or an open descriptor) is the file ``drawing`` names."""
    a, b = identity(out), identity(drawing)
    if a is None or b is None:  # one is not there yet: compare the names they resolve to
        return not isinstance(out, int) and os.path.realpath(out) == os.path.realpath(drawing)
    return a == b


def _refuse_drawing_over(out: Path | int, images: list[Path], drawings: list[Path]) -> None:
    """Refuse results that would go to the file --draw writes an image's drawing to: one of
    the two would silently replace the other."""
    for image, drawing in zip(images, drawings):
        if _same_file(out, drawing):
            where = f"where --draw writes the drawing of {image}"
            if isinstance(out, int):
                raise UserError(f"stdout goes to {drawing}, {where}; redirect it elsewhere")
            raise UserError(f"--out {out} is {where}; pass another --out")


if __name__ == "__main__":
    sys.exit(main())
