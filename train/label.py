"""Auto-label images with OpenCV Haar cascades into the selfie CSV layout.

    python -m train.label --images DIR --cascade frontalface --out labels.csv [--largest]

Writes ``image,bbox,label`` rows (``bbox`` = ``"[x1, y1, x2, y2]"`` in pixels, image paths
relative to the CSV's folder), the layout ``--data csv`` reads, as the selfie reference
design labelled its data. Images with zero or several detections are reported; with
``--largest`` the largest detection is kept, with ``--keep-empty`` images without a
detection are written with an empty box (negatives).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from data.images import IMAGE_EXTS, list_images, read_image
from runtime.errors import UserError
from runtime.atomic import atomic_output, refuse_overwrite

log = logging.getLogger(__name__)

# Cascade name -> (file in cv2.data.haarcascades, default label).
CASCADES: dict[str, tuple[str, str]] = {
    "frontalface": ("haarcascade_frontalface_default.xml", "face"),
    "frontalface_alt2": ("haarcascade_frontalface_alt2.xml", "face"),
    "frontalcatface": ("haarcascade_frontalcatface.xml", "cat"),
    "frontalcatface_extended": ("haarcascade_frontalcatface_extended.xml", "cat"),
}


@dataclass
class LabelReport:
    """What a labelling run did; ``zero``/``several``/``unreadable``/``bad_names`` list image paths."""

    out: Path
    images: Path = Path(".")
    total: int = 0
    written: int = 0
    labelled: int = 0
    zero: list[str] = field(default_factory=list)
    several: list[tuple[str, int]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    bad_names: list[str] = field(default_factory=list)  # not UTF-8: the CSV cannot name them
    kept: bool = False  # nothing labelled, and --out held a CSV: left as it was


def load_cascade(name: str) -> cv2.CascadeClassifier:
    """The OpenCV Haar cascade registered as ``name``."""
    if name not in CASCADES:
        raise ValueError(f"unknown cascade {name!r}; valid: {', '.join(CASCADES)}")
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise RuntimeError("this OpenCV has no Haar cascades (OpenCV 5 dropped them); install opencv-python-headless<5")
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADES[name][0]))
    if cascade.empty():
        raise RuntimeError(f"could not load the {name} cascade from {cv2.data.haarcascades}")
    return cascade


def detect(
    cascade: cv2.CascadeClassifier, image: np.ndarray, *, min_size: int = 30,
    scale_factor: float = 1.1, min_neighbors: int = 5,
) -> np.ndarray:
    """Detections in an RGB image as (N, 4) int x1, y1, x2, y2 pixels, largest first."""
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    found = cascade.detectMultiScale(
        gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
    )
    boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)  # (N, 4) x, y, w, h
    boxes = boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def run(
    images: Path, cascade: str, out: Path, *, largest: bool = False, keep_empty: bool = False,
    label: str | None = None, min_size: int = 30, scale_factor: float = 1.1, min_neighbors: int = 5,
    progress: bool = False,
) -> LabelReport:
    """Label every image under ``images`` and write the CSV to ``out``."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        what = "is not a folder" if images.exists() else "does not exist"
        raise ValueError(f"image folder {images} {what}; pass --images DIR (a folder of photos)")
    files = list_images(images, recursive=True)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTS)}) under {images}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a CSV file name such as {out / 'labels.csv'}")
    refuse_overwrite([out], files, "--out")  # `--out photos/a.jpg` must not eat a photo
    check_csv_name(out)
    detector = load_cascade(cascade)
    label = label or CASCADES[cascade][1]
    report = LabelReport(out=out, images=images, total=len(files))
    try:  # before the (slow) labelling: a bad --out folder must not cost the run
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the folder of --out {out}: {err.strerror or err}; "
                        "pass a path in a writable folder") from None
    rows: list[list[str]] = []
    track = _progress(files, progress)
    for path in track:
        rel = Path(os.path.relpath(path.resolve(), out.parent.resolve())).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in the name: the CSV is UTF-8
            log.warning("skipped %r: its name is not UTF-8, so the CSV cannot name it; rename it", str(path))
            report.bad_names.append(str(path))
            continue
        try:
            image = read_image(path)
        except ValueError as err:
            report.unreadable.append((str(path), str(err)))
            continue
        boxes = detect(detector, image, min_size=min_size, scale_factor=scale_factor, min_neighbors=min_neighbors)
        if len(boxes) == 0:
            report.zero.append(str(path))
            if keep_empty:
                rows.append([rel, "", label])
            continue
        if len(boxes) > 1:
            report.several.append((str(path), len(boxes)))
            if not largest:
                continue
        x1, y1, x2, y2 = (int(v) for v in boxes[0])
        rows.append([rel, f"[{x1}, {y1}, {x2}, {y2}]", label])
        report.labelled += 1
    if not report.labelled and out.is_file() and out.stat().st_size:
        # A rerun with the wrong cascade or folder must not turn the user's (perhaps
        # hand-corrected) labels into a header, or into negatives with --keep-empty.
        report.kept = True
        return report
    with atomic_output(out, "--out", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "bbox", "label"])
        writer.writerows(rows)
    report.written = len(rows)
    return report


def check_csv_name(out: Path) -> None:
    """Refuse an --out that is no ``.csv`` name, or a link to one that is not: the CSV would
    replace a model, a video or a photo outside --images. A device or FIFO (``/dev/stdout``)
    is written whatever its name."""
    if out.exists() and not out.is_file():
        return
    if out.suffix.lower() != ".csv":
        kind = f"a {out.suffix} file" if out.suffix else "a name without .csv"
        raise UserError(f"--out {out} is {kind}, but the labels are a CSV file; pass a .csv "
                        f"name such as {out.with_suffix('.csv').name}")
    real = Path(os.path.realpath(out))
    if real.suffix.lower() != ".csv":
        raise UserError(f"--out {out} links to {real}, which is no .csv file; writing the "
                        "labels there would destroy it: pass a new .csv path")


def _progress(files: list[Path], enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return files
    from rich.progress import track

    return track(files, description="labelling", transient=True)


def print_report(report: LabelReport, *, largest: bool, keep_empty: bool) -> None:
    """A rich summary and a table of the images that need a look."""
    from rich.console import Console
    from rich.table import Table

    console = Console()

    def rel(path: str) -> str:
        return Path(path).relative_to(report.images).as_posix() if Path(path).is_relative_to(report.images) else path

    problems = [(rel(p), "no detection", "written as negative" if keep_empty else "skipped") for p in report.zero]
    problems += [(rel(p), f"{n} detections", "largest kept" if largest else "skipped") for p, n in report.several]
    # the reader's reason (truncated, unknown format...) says what to fix; the path is column 1
    problems += [(rel(p), "not readable: " + why.replace(p, "it"), "skipped") for p, why in report.unreadable]
    problems += [(repr(rel(p)), "name not UTF-8", "skipped; rename it") for p in report.bad_names]
    if problems:
        table = Table(title=f"images to check ({len(problems)})", caption=f"paths relative to {report.images}")
        for col in ("image", "problem", "action"):
            table.add_column(col, overflow="fold")
        for row in problems[:30]:
            table.add_row(*row)
        if len(problems) > 30:
            table.add_row(f"... and {len(problems) - 30} more", "", "")
        console.print(table)
    summary = Table(title="labelling summary", show_header=False)
    summary.add_column(overflow="fold")
    summary.add_column(overflow="fold")
    for key, value in (
        ("images", report.total), ("labelled (one box)", report.labelled),
        ("no detection", len(report.zero)), ("several detections", len(report.several)),
        ("unreadable", len(report.unreadable)), ("name not UTF-8", len(report.bad_names)),
        ("rows written", report.written),
        ("CSV", f"{report.out} (kept as it was: nothing labelled)" if report.kept else str(report.out)),
    ):
        summary.add_row(key, str(value))
    console.print(summary)


# Flag bounds. A scale step under 1.01 multiplies the cascade's pyramid levels (1.0001: over
# 10 s a photo, a run that looks hung; six 500 px photos take 7.7 s at 1.01, 1.5 s at the
# default 1.1); a --min-size or --min-neighbors past a C int was a cv2.error traceback.
MIN_SCALE_FACTOR, MAX_SCALE_FACTOR = 1.01, 100.0
MAX_MIN_SIZE, MAX_MIN_NEIGHBORS = 100_000, 10_000


def _bad_flag(args: argparse.Namespace) -> str | None:
    """The message for an out-of-range cascade flag, or None when all are usable."""
    for flag, value in (("--images", args.images), ("--out", args.out)):
        if not value.strip():  # an unset shell variable: Path("") is the current folder
            return f"{flag} is empty ({value!r}); give it a path"
    if not MIN_SCALE_FACTOR <= args.scale_factor <= MAX_SCALE_FACTOR:  # NaN too
        return (f"--scale-factor must be above 1, within {MIN_SCALE_FACTOR:g}-{MAX_SCALE_FACTOR:g} "
                f"(got {args.scale_factor:g}); the default 1.1 suits most photos")
    if not 1 <= args.min_size <= MAX_MIN_SIZE:
        return f"--min-size must be 1-{MAX_MIN_SIZE} pixels (got {args.min_size}); the default is 30"
    if not 0 <= args.min_neighbors <= MAX_MIN_NEIGHBORS:
        return f"--min-neighbors must be 0-{MAX_MIN_NEIGHBORS} (got {args.min_neighbors}); the default is 5"
    return None


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m train.label", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--cascade", required=True, choices=sorted(CASCADES), help="OpenCV Haar cascade")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--largest", action="store_true", help="keep the largest of several detections")
    parser.add_argument("--keep-empty", action="store_true", help="write images without detection as negatives")
    parser.add_argument("--label", help="class name to write (default: face or cat, from the cascade)")
    parser.add_argument("--min-size", type=int, default=30, help="smallest box side in pixels (default 30)")
    parser.add_argument("--scale-factor", type=float, default=1.1, help="cascade scale step, 1.01-100 (default 1.1)")
    parser.add_argument("--min-neighbors", type=int, default=5, help="cascade minNeighbors (default 5)")
    args = parser.parse_args(argv)
    bad = _bad_flag(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    if args.label is not None and args.label.strip().lower() in ("", "none"):
        print(f"error: --label {args.label!r} cannot name an object ('none' is the no-object class); "
              "pass the object's name, e.g. --label face", file=sys.stderr)
        return 2
    try:
        report = run(
            Path(args.images), args.cascade, Path(args.out), largest=args.largest, keep_empty=args.keep_empty,
            label=args.label, min_size=args.min_size, scale_factor=args.scale_factor,
            min_neighbors=args.min_neighbors, progress=sys.stderr.isatty(),
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_report(report, largest=args.largest, keep_empty=args.keep_empty)
    return 0 if report.labelled else 1


if __name__ == "__main__":
    sys.exit(main())
