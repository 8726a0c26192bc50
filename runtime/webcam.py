"""Live localization on a camera, stream, video file or image folder.

    python -m runtime.webcam --source 0                       # camera 0, window if possible
    python -m runtime.webcam --source clip.mp4 --no-display --save out.mp4
    python -m runtime.webcam --source 0 --serve 127.0.0.1:8080  # watch in a browser

Capture runs in its own thread. A live source keeps only the newest frame (stale ones
are dropped and counted); a file source is processed frame by frame. Stops on Ctrl-C,
`q` in the window or the end of the source, then prints a summary.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime._cli import console, fail, resolve_model, setup_logging
from runtime.localizer import Localizer, Result
from runtime.overlay import BoxSmoother, FpsMeter, HudValues, draw_hud, draw_result
from runtime.serve import MjpegServer, parse_address
from runtime.sources import Capture, open_frames

log = logging.getLogger(__name__)
_WINDOW = "edgeloc (q to quit)"
_KEEP = 1 << 16  # latency samples kept for percentiles: fixed memory on endless runs


@dataclass
class Summary:
    """What a run did: counts, rates and latency percentiles."""

    frames: int = 0
    dropped: int = 0
    failed: int = 0
    seconds: float = 0.0
    stopped_by: str = "end of source"
    backend: str = ""
    error: str | None = None
    latency: np.ndarray = field(default_factory=lambda: np.zeros(_KEEP, np.float32), repr=False)
    per_frame: np.ndarray = field(default_factory=lambda: np.zeros(_KEEP, np.float32), repr=False)

    def record(self, result: Result, frame_ms: float) -> None:
        i = self.frames % _KEEP
        self.latency[i], self.per_frame[i] = result.latency_ms, frame_ms
        self.frames += 1

    def _pct(self, arr: np.ndarray, q: float) -> float:
        n = min(self.frames, _KEEP)
        return float(np.percentile(arr[:n], q)) if n else float("nan")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "latency_p50_ms": round(self._pct(self.latency, 50), 3),
            "latency_p95_ms": round(self._pct(self.latency, 95), 3),
            "frame_p50_ms": round(self._pct(self.per_frame, 50), 3),
            "frame_p95_ms": round(self._pct(self.per_frame, 95), 3),
            "stopped_by": self.stopped_by,
            "backend": self.backend,
            "error": self.error,
        }

    def print(self) -> None:
        from rich.table import Table

        d = self.to_dict()
        table = Table(title="edgeloc run summary", show_header=False, title_justify="left")
        rows = [
            ("frames processed", str(d["frames"])),
            ("dropped (stale, live sources)", str(d["dropped"])),
            ("failed (skipped)", str(d["failed"])),
            ("wall time", f"{d['seconds']:.2f} s"),
            ("mean FPS", f"{d['fps']:.1f}"),
            (
                "model latency p50 / p95",
                f"{d['latency_p50_ms']:.2f} / {d['latency_p95_ms']:.2f} ms",
            ),
            ("per frame p50 / p95", f"{d['frame_p50_ms']:.2f} / {d['frame_p95_ms']:.2f} ms"),
            ("backend", d["backend"]),
            ("stopped by", d["stopped_by"]),
        ]
        if self.error:
            rows.append(("source error", self.error))
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)


def gui_available() -> bool:
    """A window can open: OpenCV has a GUI backend and (on Linux) a display is set."""
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if "GUI:" in line), "")
    if not gui or gui.upper() == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _open_writer(path: Path, fps: float, shape: tuple) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(
        *("mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG")
    )
    writer = cv2.VideoWriter(str(path), fourcc, fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise ValueError(f"cannot write video {path}; use a .mp4 or .avi name in a writable folder")
    return writer


def run(
    model: str | Path | Localizer,
    source: str | int = 0,
    *,
    threshold: float = 0.5,
    save: str | Path | None = None,
    serve: str | None = None,
    display: bool = True,
    smooth: float = 0.0,
    pace: bool | None = None,
    loop: bool = False,
    max_frames: int | None = None,
    threads: int | None = None,
    backend: str = "auto",
    providers: Any = None,
    on_frame: Callable[[np.ndarray, Result], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Run the capture -> localize -> draw -> show/save/serve loop until the source ends.

    Args:
        pace: play file sources at their own frame rate (default: only when shown or served).
        loop: restart a file source at its end (a looping demo for --serve).
        on_frame: called with each drawn BGR frame and its result (tests, custom sinks).
        on_start: called once with {"url": ...} when outputs are ready.
        stop: set it from another thread to end the run.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    smoother = BoxSmoother(smooth)
    save_path = Path(save).expanduser() if save else None
    if save_path is not None and not save_path.parent.is_dir():
        raise FileNotFoundError(
            f"folder {save_path.parent} for --save does not exist; create it first"
        )
    loc = (
        model
        if isinstance(model, Localizer)
        else Localizer.load(model, backend, threads, providers, threshold=threshold)
    )
    loc.threshold = threshold
    src = open_frames(source, loop=loop)
    server = None
    try:
        if serve:
            server = MjpegServer(
                *parse_address(serve), title=f"edgeloc: {Path(str(loc.path)).name}"
            ).start()
            console.print(f"serving the stream on [bold]{server.url}[/] (Ctrl-C to stop)")
    except Exception:
        src.close()
        raise
    window = display and gui_available()
    if display and not window:
        log.info("no display or GUI OpenCV build: running without a window")
    pace = (window or server is not None) and not src.live if pace is None else pace
    summary = Summary(backend=f"{loc.backend_name}/{loc.provider}")
    capture = Capture(src, prepare=lambda image: loc.prepare(image, bgr=True)).start()
    writer, meter, hud, period = None, FpsMeter(), HudValues(), 1.0 / src.fps
    if on_start:
        on_start({"url": server.url if server else None})
    t_start = next_due = time.perf_counter()
    try:
        while True:
            if stop is not None and stop.is_set():
                summary.stopped_by = "stop request"
                break
            try:
                frame = capture.get(timeout=0.25)
            except queue.Empty:
                continue  # nothing new yet: look at the stop flag again
            if frame is None:
                break
            if frame.image is None:
                summary.failed += 1
                log.warning("skipped frame %d (%s): %s", frame.index, frame.name, frame.error)
                continue
            t0 = time.perf_counter()
            try:
                result = loc.predict(frame.image, bgr=True, pixels=frame.pixels)
                img = draw_result(frame.image, result, smoother.update(result))
                draw_hud(img, *hud.update(meter.tick(), result.latency_ms))
            except Exception as err:  # one bad frame must not end a live run
                summary.failed += 1
                log.warning("frame %d failed: %s", frame.index, err)
                continue
            summary.record(result, (time.perf_counter() - t0) * 1e3)
            if save_path is not None:
                writer = writer or _open_writer(save_path, src.fps, img.shape)
                writer.write(img)
            if server is not None:
                server.publish(
                    img,
                    {
                        "frames": summary.frames,
                        "fps": round(meter.fps, 1),
                        "latency_ms": round(result.latency_ms, 2),
                        "label": result.label,
                        "score": round(result.score, 3),
                        "present": result.present,
                    },
                )
            if on_frame is not None:
                on_frame(img, result)
            if window:
                cv2.imshow(_WINDOW, img)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    summary.stopped_by = "q key"
                    break
            if max_frames and summary.frames >= max_frames:
                summary.stopped_by = f"--max-frames {max_frames}"
                break
            if pace:  # play files at their own rate; when late, do not rush to catch up
                next_due = max(next_due + period, time.perf_counter())
                time.sleep(max(0.0, next_due - time.perf_counter()))
    except KeyboardInterrupt:
        summary.stopped_by = "Ctrl-C"
    finally:
        summary.seconds = time.perf_counter() - t_start
        capture.stop()
        summary.dropped, summary.error = capture.dropped, capture.error
        if writer is not None:
            writer.release()
        if server is not None:
            server.stop()
            if summary.stopped_by == "end of source" and not src.live:
                console.print("the source ended, so did the stream: add --loop to keep serving it")
        if window:
            cv2.destroyAllWindows()
    return summary


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stop like Ctrl-C: summary, clean exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.webcam", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", help="a .tflite or .onnx model (default: runtime/models/cat_int8.tflite)"
    )
    parser.add_argument(
        "--source",
        default="0",
        help="camera index, video file, image folder, glob or rtsp:// URL (default 0)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="no box under this score (0.5)"
    )
    parser.add_argument("--save", help="write the annotated video here (.mp4 or .avi)")
    parser.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="serve a page with a live MJPEG stream (e.g. 127.0.0.1:8080)",
    )
    parser.add_argument("--no-display", action="store_true", help="never open a window")
    parser.add_argument(
        "--smooth", type=float, default=0.0, help="box smoothing 0 (off) .. 0.9 (0)"
    )
    parser.add_argument("--loop", action="store_true", help="restart a file source at its end")
    parser.add_argument(
        "--no-pace",
        action="store_true",
        help="process files as fast as possible even when shown or served",
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--threads", type=int, help="engine threads (default: cores, at most 4)")
    parser.add_argument("--backend", default="auto", help="auto, tflite, onnx or a backend name")
    parser.add_argument("--providers", help="ONNX Runtime providers: cuda,tensorrt,openvino,coreml")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    # OpenCV's own thread pool costs more than it saves on one frame's resize and colour
    # swap (92 us vs 42 us for 640x480 -> 128 px here); capture and inference already run
    # in two threads of their own.
    cv2.setNumThreads(1)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
    try:
        summary = run(
            resolve_model(args.model),
            args.source,
            threshold=args.threshold,
            save=args.save,
            serve=args.serve,
            display=not args.no_display,
            smooth=args.smooth,
            pace=False if args.no_pace else None,
            loop=args.loop,
            max_frames=args.max_frames,
            threads=args.threads,
            backend=args.backend,
            providers=args.providers,
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(err)
    except KeyboardInterrupt:
        return 130
    summary.print()
    if args.json:
        import json

        print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
