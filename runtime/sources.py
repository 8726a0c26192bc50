"""Frame sources (camera, stream, video file, image folder or glob) and the capture thread.

A live source (camera, rtsp/http stream) keeps only the newest frame: when inference is
slower than the camera, stale frames are dropped and counted, never queued. A file
source hands over every frame, in order, through a small bounded queue.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from data.images import (DEFAULT_MAX_PIXELS, IMAGE_EXTS, ImageError, list_images,
                         pixel_limit_error, read_image, starts_like_image)
from runtime._videoio import connect, in_thread, opencv_name
from runtime.errors import UserError
from runtime.paths import stat_path

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
_MAX_FAILS = 25  # consecutive read failures before a source counts as gone
_MAX_CAMERA = 9999  # camera indexes (OpenCV adds its backend ids, up to 2600, to them)
_V4L2_MAJOR = 81  # Linux video4linux character devices (/dev/video0): cameras, allowed
_HINT = ("pass a camera index (0), a video file, an image folder, a glob ('frames/*.jpg') "
         "or an rtsp:// URL")
# A file source may announce a frame count that is an estimate (duration x rate): one frame
# short of it is the end, more is a truncated or damaged file (30 announced, 15 read).
_COUNT_SLACK = 1
# Concatenated JPEGs are a video (OpenCV plays them), though they start like one image.
_MJPEG_EXTS = (".mjpeg", ".mjpg")


@dataclass
class Frame:
    """One captured frame (BGR), or the reason it could not be read."""

    index: int
    image: np.ndarray | None
    name: str = ""
    error: str | None = None
    pixels: np.ndarray | None = None  # model input, when the capture thread prepared it


class Source:
    """Base class: ``read()`` returns the next Frame or None at the end.

    ``ended_early`` says why, when the source ended before it should have (a file shorter
    than its header, a stream that stalled): the run reports it and exits non-zero.
    """

    live = False
    fps = 30.0
    files: ClassVar[list[Path]] = []  # the files it reads (never to be replaced by an output)
    ended_early: str | None = None

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(Source):
    """A cv2.VideoCapture: camera index, stream URL or video file.

    A source over ``max_pixels`` is refused when it opens (from its header, else its first
    frame); a later frame over it (a stream that changes resolution) is a failed frame.
    """

    def __init__(self, target: int | str, live: bool, loop: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.target, self.live, self.loop, self.max_pixels = target, live, loop, max_pixels
        self.files = [] if live else [Path(str(target))]
        if isinstance(target, str):
            opencv_name(target, "source")
        if isinstance(target, str) and target.lower().startswith(STREAM_SCHEMES):
            # A network stream: FFmpeg may block 30 s in C, out of reach of Ctrl-C/SIGTERM.
            # Cameras and files open here (macOS wants its camera opened on the main thread).
            self._cap, first = in_thread(lambda: connect(target, live, max_pixels),
                                         lambda opened: opened[0].release())
        else:
            self._cap, first = connect(target, live, max_pixels)
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self._index = 0
        self._pass_start = 0  # index of the first frame of this pass (--loop restarts)
        self._last_frame = time.monotonic()
        self._owed = 0  # failed reads that a later frame proved were lost frames

    def read(self) -> Frame | None:
        if self._owed:
            self._owed -= 1
            return self._lost()
        if self._pending is not None:
            image, self._pending = self._pending, None
            return self._frame(image)
        fails = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None:
                if not fails:
                    return self._frame(image)
                # Only now are the failed reads known to be lost frames, not the end.
                self._owed, self._pending = fails - 1, image
                return self._lost()
            if fails >= _MAX_FAILS or not self._may_retry():
                break
            fails += 1
        # Failed reads never followed by a frame are the end of the source (a container
        # whose frame count is an estimate says "more"): not counted as failed frames.
        if fails:
            log.info("%s ended after %d frames (%d more reads failed)", self.target,
                     self._index, fails)
        self._check_end()
        if self.loop and not self.live and self._index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pass_start = self._index
            ok, image = self._cap.read()
            if ok and image is not None:
                return self._frame(image)
        return None

    def _check_end(self) -> None:
        """At the end of the source: warn (once) when it ended before it should have."""
        if self.ended_early is not None:
            return
        read = self._index - self._pass_start
        if self.live:  # a camera or stream has no natural end: it stalled or went away
            what = f"camera {self.target}" if isinstance(self.target, int) else \
                f"stream {self.target}"
            stalled = time.monotonic() - self._last_frame
            why = (f"stream stalled for {stalled:.0f} s" if stalled >= 1 else
                   "the other end closed it")
            self.ended_early = (f"{what} stopped after {self._index} frames ({why}); check the "
                                "camera or the stream")
        elif self.frame_count > 0 and read < self.frame_count - _COUNT_SLACK:
            self.ended_early = (f"{self.target} ended early: {read} of the {self.frame_count} "
                                "frames its header announces were read (a truncated or damaged "
                                "file?); re-copy or re-encode it")
        if self.ended_early:
            log.warning("%s", self.ended_early)

    def _frame(self, image: np.ndarray) -> Frame:
        self._index += 1
        self._last_frame = time.monotonic()
        height, width = image.shape[:2]
        error = pixel_limit_error(f"frame {self._index - 1}", width, height, self.max_pixels)
        if error:  # the stream changed its resolution
            return Frame(self._index - 1, None, str(self.target), error)
        return Frame(self._index - 1, image, str(self.target))

    def _lost(self) -> Frame:
        self._index += 1
        return Frame(self._index - 1, None, str(self.target), "frame could not be read")

    def _may_retry(self) -> bool:
        """A read failed: may more frames follow (retry) or is this the end of the source?"""
        if self.live:
            time.sleep(0.01)
            return True
        pos = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
        return 0 < self.frame_count and pos < self.frame_count - 1

    def close(self) -> None:
        self._cap.release()


class ImageSource(Source):
    """A list of image files, read in order; an undecodable file becomes a failed frame.

    With ``loop``, a full pass in which no file could be read ends the source (with
    ``ended_early``): looping over it again would only spin.
    """

    def __init__(self, paths: list[Path], loop: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.paths, self.loop, self.max_pixels = paths, loop, max_pixels
        self.files = list(paths)
        self._i = 0
        self._read_in_pass = 0  # images decoded since the pass began

    def read(self) -> Frame | None:
        if self._i >= len(self.paths):
            if not self.loop:
                return None
            if not self._read_in_pass:
                self.ended_early = (f"none of the {len(self.paths)} images of the source could "
                                    "be read, so --loop stopped after one pass; fix or remove "
                                    "them")
                log.warning("%s", self.ended_early)
                return None
            self._i, self._read_in_pass = 0, 0
        path = self.paths[self._i]
        self._i += 1
        try:
            image = read_image(path, bgr=True, max_pixels=self.max_pixels)
        except ImageError as err:
            return Frame(self._i - 1, None, str(path), str(err))
        self._read_in_pass += 1
        return Frame(self._i - 1, image, str(path))


def open_frames(
    spec: str | int, loop: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Source:
    """Open ``--source``: camera index, stream URL, video file, image folder, glob or image file.

    A path that is neither a regular file, a folder nor a camera device (a FIFO, a socket,
    ``/dev/zero``) is refused from ``stat``: opening it could block forever.
    """
    text = str(spec).strip()
    if not text:
        raise UserError(f"--source is empty; {_HINT}")
    if text.isascii() and text.isdigit():  # "²" is a digit to Python, not to int()
        if int(text) > _MAX_CAMERA:
            raise UserError(f"no camera at index {text} (indexes run 0..{_MAX_CAMERA}); {_HINT}")
        return CaptureSource(int(text), live=True, max_pixels=max_pixels)
    if text.lower().startswith(STREAM_SCHEMES):
        return CaptureSource(text, live=True, max_pixels=max_pixels)
    path = Path(text).expanduser()
    # A name that exists is that file or folder, even with [ ] or ? in it ("clip[1].mp4").
    if any(c in text for c in "*?[") and not os.path.lexists(path):
        paths = sorted(Path(p) for p in glob.glob(str(path))
                       if Path(p).suffix.lower() in IMAGE_EXTS)
        if not paths:
            raise UserError(f"no images match {text!r}; {_HINT}")
        return ImageSource(paths, loop, max_pixels)
    info = stat_path(path, "source", _HINT)
    if stat.S_ISDIR(info.st_mode):
        try:
            paths = list_images(path)
        except OSError as err:
            raise UserError(f"cannot list folder {path}: {err.strerror or err}") from None
        if not paths:
            raise UserError(
                f"no images ({', '.join(sorted(IMAGE_EXTS))}) in folder {path}; {_HINT}"
            )
        return ImageSource(paths, loop, max_pixels)
    if stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) == _V4L2_MAJOR:
        return CaptureSource(str(path), live=True, max_pixels=max_pixels)  # /dev/video0
    if not stat.S_ISREG(info.st_mode):
        raise UserError(
            f"source {path} is not a regular file (a FIFO, socket or device); {_HINT}"
        )
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTS or (suffix not in _MJPEG_EXTS and is_image_file(path)):
        return ImageSource([path], loop, max_pixels)
    if info.st_size == 0:  # OpenCV's answer, "cannot decode", would send it to be converted
        raise UserError(f"video {path} is empty (0 bytes); re-copy or re-record it")
    return CaptureSource(str(path), live=False, loop=loop, max_pixels=max_pixels)


def is_image_file(path: Path) -> bool:
    """Whether a file starts like an image ``read_image`` decodes (its first bytes only)."""
    try:
        # O_NONBLOCK: a file swapped for a FIFO since it was checked cannot block us.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            head = f.read(32)
    except OSError:
        return False  # the video reader reports the file
    return starts_like_image(head)  # an image whatever its name (.jfif, bomb.dat)


class Capture:
    """Reads a Source in a background thread; iterate to get frames, ``stop()`` to end."""

    def __init__(
        self,
        source: Source,
        queue_size: int = 4,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.source = source
        self.prepare = prepare  # runs here, beside decoding, off the inference thread
        self.dropped = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._latest: Frame | None = None
        self._done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="edgeloc-capture", daemon=True)

    def start(self) -> Capture:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                if self.prepare is not None and frame.image is not None:
                    try:
                        frame.pixels = self.prepare(frame.image)
                    except Exception as err:  # e.g. an odd frame shape: count it, go on
                        frame.image, frame.error = None, f"cannot prepare frame: {err}"
                self._hand_over(frame)
        except Exception as err:  # a driver error must end the run cleanly, not hang it
            self.error = f"{type(err).__name__}: {err}"
            log.error("capture stopped: %s", self.error)
        finally:
            self._hand_over(None)

    def _hand_over(self, frame: Frame | None) -> None:
        if self.source.live:
            with self._cond:
                if frame is None:
                    self._done = True
                elif self._latest is not None:
                    self.dropped += 1  # the consumer never saw the previous frame
                    self._latest = frame
                else:
                    self._latest = frame
                self._cond.notify_all()
            return
        while True:  # file source: block (in short steps) until the consumer takes it
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame (live: the newest one), or None at the end of the source."""
        if not self.source.live:
            frame = self._queue.get(timeout=timeout)
            if frame is None:
                self._done = True
            return frame
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None or self._done, timeout):
                raise queue.Empty
            frame, self._latest = self._latest, None
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.get()) is not None:
            yield frame

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        self.source.close()
