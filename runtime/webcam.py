"""Live localization on a camera, stream, video file or image folder.

    python -m runtime.webcam --source 0                       # camera 0, window if possible
    python -m runtime.webcam --source clip.mp4 --no-display --save out.mp4
    python -m runtime.webcam --source 0 --serve 127.0.0.1:8080  # watch in a browser

Capture runs in its own thread. A live source keeps only the newest frame (stale ones
are dropped and counted); a file source is processed frame by frame. Stops on Ctrl-C,
SIGTERM, `q` in the window or the end of the source, then prints a summary. `--save` keeps
every processed frame (other sizes letterboxed) and never replaces the source or model;
the exit code is 1 when any frame failed (unreadable, model error, not written) or the
source ended early (a video shorter than its header, a camera or stream that stalled).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.markup import escape

from data.images import DEFAULT_MAX_PIXELS
from runtime._cli import (
    EXIT_SIGPIPE,
    add_model_args,
    console,
    drop_stdout,
    fail,
    int_in,
    refuse_empty,
    resolve_model,
    setup_logging,
    sigterm_stops,
    stop_exit_code,
    stop_reason,
)
from runtime.contract import sidecar_path
from runtime.errors import UserError
from runtime.localizer import Localizer, Result
from runtime.overlay import BoxSmoother, FpsMeter, HudValues, draw_hud, draw_result
from runtime.atomic import refuse_overwrite
from runtime.paths import check_output_file
from runtime.saver import CONTAINERS, VideoSaver, check_video_name
from runtime.serve import DEFAULT_MAX_VIEWERS, MjpegServer, parse_address
from runtime.sources import Capture, open_frames

log = logging.getLogger(__name__)
_WINDOW = "edgeloc (q to quit)"
_KEEP = 1 << 16  # latency samples kept for percentiles: fixed memory on endless runs
_WARN_FAILS = 10  # failed frames logged one by one; later ones are only counted


@dataclass
class Summary:
    """What a run did: counts, rates and latency percentiles."""

    frames: int = 0
    dropped: int = 0
    failed: int = 0
    written: int | None = None  # frames in the --save video (None: not saving)
    failures: dict[str, int] = field(default_factory=dict)  # reason -> failed frames
    seconds: float = 0.0
    stopped_by: str = "end of source"
    ended_early: str | None = None  # why the source ended before it should have
    backend: str = ""
    error: str | None = None
    latency: np.ndarray = field(default_factory=lambda: np.zeros(_KEEP, np.float32), repr=False)
    per_frame: np.ndarray = field(default_factory=lambda: np.zeros(_KEEP, np.float32), repr=False)

    def record(self, result: Result, frame_ms: float) -> None:
        i = self.frames % _KEEP
        self.latency[i], self.per_frame[i] = result.latency_ms, frame_ms
        self.frames += 1

    def fail(self, reason: str, detail: str) -> None:
        """Count a failed frame under ``reason``; the first few are logged."""
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1
        if self.failed <= _WARN_FAILS:
            more = " (further failures are only counted)" if self.failed == _WARN_FAILS else ""
            log.warning("%s: %s%s", reason, detail, more)

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
            "failures": dict(self.failures),
            "written": self.written,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "latency_p50_ms": round(self._pct(self.latency, 50), 3),
            "latency_p95_ms": round(self._pct(self.latency, 95), 3),
            "frame_p50_ms": round(self._pct(self.per_frame, 50), 3),
            "frame_p95_ms": round(self._pct(self.per_frame, 95), 3),
            "stopped_by": self.stopped_by,
            "ended_early": self.ended_early,
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
            *((f"  {reason}", str(n)) for reason, n in self.failures.items()),
            *((("written to --save", str(d["written"])),) if self.written is not None else ()),
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
        if self.ended_early:
            rows.append(("source ended early", self.ended_early))
        if self.error:
            rows.append(("source error", self.error))
        for k, v in rows:
            table.add_row(k, escape(v))
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
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_viewers: int = DEFAULT_MAX_VIEWERS,
    verify: bool = True,
    on_frame: Callable[[np.ndarray, Result], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Run the capture -> localize -> draw -> show/save/serve loop until the source ends.

    Args:
        pace: play file sources at their own frame rate (default: only when shown or served).
        loop: restart a file source at its end (a looping demo for --serve).
        max_pixels: an image over this many pixels is a failed frame; a video, camera or
            stream is refused when it opens (a later frame over it is a failed frame).
        max_viewers: concurrent MJPEG stream viewers; more are answered 503.
        on_frame: called with each drawn BGR frame and its result (tests, custom sinks).
        on_start: called once with {"url": ...} when outputs are ready.
        stop: set it from another thread to end the run.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {max_frames}")
    smoother = BoxSmoother(smooth)
    save_path = None
    if save is not None:  # "" too: refused as a folder name, never a silent "not saving"
        save_path = check_video_name(check_output_file(save, "--save"))
    address = parse_address(serve) if serve else None  # bad flags fail before a slow open
    loc = (
        model
        if isinstance(model, Localizer)
        else Localizer.load(model, backend, threads, providers, threshold=threshold, verify=verify)
    )
    loc.threshold = threshold
    src = open_frames(source, loop=loop, max_pixels=max_pixels)
    server = saver = None
    try:
        if save_path is not None:
            inputs = [*src.files, loc.path, sidecar_path(loc.path)]
            refuse_overwrite([save_path], inputs, "--save")
            saver = VideoSaver(save_path, src.fps)  # a folder it cannot write fails here
        if address is not None:
            server = MjpegServer(
                *address,
                title=f"edgeloc: {Path(str(loc.path)).name}",
                max_viewers=max_viewers,
            ).start()
            console.print(f"serving the stream on [bold]{escape(server.url)}[/] (Ctrl-C to stop)")
    except BaseException:
        if saver is not None:
            saver.close(keep=False)
        src.close()
        raise
    window = display and gui_available()
    if display and not window:
        log.info("no display or GUI OpenCV build: running without a window")
    pace = (window or server is not None) and not src.live if pace is None else pace
    summary = Summary(backend=f"{loc.backend_name}/{loc.provider}")
    capture = Capture(src, prepare=lambda image: loc.prepare(image, bgr=True)).start()
    meter, hud, period = FpsMeter(), HudValues(), 1.0 / src.fps
    t_start = next_due = time.perf_counter()
    finished = False
    try:
        if on_start:
            on_start({"url": server.url if server else None})
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
                summary.fail("unreadable frame", f"frame {frame.index} ({frame.name}): "
                             f"{frame.error}")
                continue
            t0 = time.perf_counter()
            try:
                result = loc.predict(frame.image, bgr=True, pixels=frame.pixels)
            except UserError as err:  # a model error or NaN on one frame: count it, go on
                summary.fail("model error", f"frame {frame.index}: {err}")
                continue
            img = draw_result(frame.image, result, smoother.update(result))
            draw_hud(img, *hud.update(meter.tick(), result.latency_ms))
            summary.record(result, (time.perf_counter() - t0) * 1e3)
            if saver is not None and not saver.write(img):
                summary.fail("not written", f"frame {frame.index} to {save_path}")
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
        finished = True
    except KeyboardInterrupt as err:
        summary.stopped_by = stop_reason(err)
        finished = True  # a stop by signal keeps the video so far
    finally:
        summary.seconds = time.perf_counter() - t_start
        capture.stop()
        summary.dropped, summary.error = capture.dropped, capture.error
        summary.ended_early = src.ended_early
        if server is not None:
            server.stop()
            if summary.stopped_by == "end of source" and not src.live:
                console.print("the source ended, so did the stream: add --loop to keep serving it")
        if window:
            cv2.destroyAllWindows()
        if saver is not None:  # last: a video it cannot commit raises, the rest is closed
            _close_saver(saver, summary, keep=finished)
    return summary


def _close_saver(saver: VideoSaver, summary: Summary, keep: bool) -> None:
    """Commit the --save video and count frames the file does not hold as failed."""
    summary.written = saver.close(keep=keep)
    if keep and summary.written < saver.written:
        lost = saver.written - summary.written
        summary.failed += lost
        summary.failures["not written"] = summary.failures.get("not written", 0) + lost
        log.warning("%s holds %d of the %d frames written to it", saver.path,
                    summary.written, saver.written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.webcam", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--source",
        default="0",
        help="camera index, video file, image folder, glob or rtsp:// URL (default 0)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="no box under this score (0.5)"
    )
    parser.add_argument(
        "--save", help=f"write the annotated video here ({', '.join(CONTAINERS)})"
    )
    parser.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="serve a page with a live MJPEG stream (e.g. 127.0.0.1:8080 or [::1]:8080)",
    )
    parser.add_argument(
        "--max-viewers",
        type=int_in(1, 1000),
        default=DEFAULT_MAX_VIEWERS,
        help=f"concurrent stream viewers for --serve (default {DEFAULT_MAX_VIEWERS})",
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
    parser.add_argument("--max-frames", type=int_in(1), help="stop after this many frames")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_model_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    # OpenCV's own thread pool costs more than it saves on one frame's resize and colour
    # swap (92 us vs 42 us for 640x480 -> 128 px here); capture and inference already run
    # in two threads of their own.
    cv2.setNumThreads(1)
    try:
        refuse_empty(args)
        with sigterm_stops():  # SIGTERM stops like Ctrl-C: summary, clean exit
            summary = run(
                resolve_model(args.model, args.backend),
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
                max_pixels=args.max_pixels,
                max_viewers=args.max_viewers,
                verify=not args.no_verify,
            )
    except UserError as err:
        return fail(err)
    except KeyboardInterrupt as stop:  # before the first frame: nothing to summarize
        return stop_exit_code(stop_reason(stop))
    summary.print()
    if args.json:
        import json

        try:
            print(json.dumps(summary.to_dict()), flush=True)
        except BrokenPipeError:  # the reader went away: stop quietly, as infer does
            drop_stdout()
            return EXIT_SIGPIPE
        except OSError as err:  # a full disk behind a redirect
            drop_stdout()
            return fail(UserError(f"cannot write the JSON summary to stdout: {err.strerror or err}"))
    return 1 if summary.failed or summary.ended_early or summary.error else 0


if __name__ == "__main__":
    sys.exit(main())
