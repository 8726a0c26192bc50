"""``--save``: every processed frame into one video file, written atomically.

The video takes the first frame's size (at least ``MIN_SIDE`` pixels a side); a frame of
another size (an image folder of mixed sizes, a stream that changes resolution) is
letterboxed into it, never dropped. Frames go to a hidden temporary file with an ASCII
name in the target's real folder (through a symlink, checked writable before the run),
renamed to the target when the run ends; the last frame is read back from the finished
file first, so a file a full disk cut short is never reported whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.atomic import commit, remove_leftovers, temp_name
from runtime._videoio import opencv_name

log = logging.getLogger(__name__)

# --save containers -> the codec written into them. Other names are refused before a run
# starts: OpenCV opens a writer for "out.png" too, then keeps one frame of the whole video.
CONTAINERS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
# The smallest video side: OpenCV's MJPG writer corrupts its heap on 4x4 and 5x5 frames
# (an abort, exit 134; 1-3 and 6+ are fine), and a 1x1 first image would make the whole
# video 1x1. Smaller first frames are letterboxed up to it.
MIN_SIDE = 16


def check_video_name(path: Path, flag: str = "--save") -> Path:
    """Refuse a video name whose extension is not one of ``CONTAINERS``."""
    if path.suffix.lower() not in CONTAINERS:
        kind = f"a {path.suffix} file" if path.suffix else "a name without an extension"
        raise UserError(f"{flag} {path}: cannot write a video as {kind}; use one of "
                        f"{', '.join(CONTAINERS)} (e.g. out.mp4)")
    return path


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit (height, width) ``size`` with its aspect kept, black bars around."""
    height, width = size
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)  # (H, W, 3) BGR
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def frames_held(path: Path, written: int) -> int:
    """How many of the ``written`` frames the video file at ``path`` holds, by reading them.

    The container's own frame count is not proof: a writer that hit a full disk may still
    patch the header with the count it was handed. Reading the last frame, and landing
    where it should, is (a few ms; a seek past the end can quietly read frame 0 instead);
    when that fails the readable frames are counted one by one. -1: it does not open.
    """
    cap = cv2.VideoCapture(opencv_name(path, "--save"))
    try:
        if not cap.isOpened():
            return -1
        if written <= 0:
            return 0
        cap.set(cv2.CAP_PROP_POS_FRAMES, written - 1)
        ok, frame = cap.read()
        if ok and frame is not None and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == written:
            return written
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        held = 0
        while held < written and cap.read()[0]:
            held += 1
        return held
    finally:
        cap.release()


class VideoSaver:
    """Writes BGR frames to ``path`` (a name in ``CONTAINERS``); ``close`` commits it.

    The folder is checked writable here, before any frame: the temporary file is created
    at once, so a read-only folder (or one behind a symlink) fails before the run.
    """

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = check_video_name(Path(path)), fps
        self.real = Path(os.path.realpath(self.path))  # a symlink's target: written there
        folder = self.real.parent
        remove_leftovers(folder)
        # OpenCV crashes on a name that is not UTF-8 (o\xffut.avi): it only ever sees this
        # ASCII temporary name, and os.replace gives the file its real name.
        opencv_name(folder, "the --save folder")  # one OpenCV cannot take: refused now
        self.temp = temp_name(folder / f"video{self.real.suffix.lower()}")
        try:
            os.close(os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as err:
            raise UserError(f"cannot write video {self.path}: cannot create a file in folder "
                            f"{folder} ({err.strerror or err}); pass a path in a writable "
                            "folder") from None
        self.written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._shrunk = False  # warned once that frames are scaled down to the video size

    def write(self, frame: np.ndarray) -> bool:
        """Add one frame (letterboxed to the video size); False when it could not be written."""
        if self._writer is None:
            self._open(frame.shape[:2])
        h, w = frame.shape[:2]
        height, width = self._size
        if not self._shrunk and (h > 2 * height or w > 2 * width):
            self._shrunk = True
            log.warning("frame %d is %dx%d, shrunk into the %dx%d video (its first frame's "
                        "size); start the source with a full-size frame", self.written, w, h,
                        width, height)
        try:
            self._writer.write(letterbox(frame, self._size))
        except cv2.error as err:
            log.warning("frame not written to %s: %s", self.path, err)
            return False
        self.written += 1
        return True

    def _open(self, first: tuple[int, int]) -> None:
        h, w = first
        self._size = (max(h, MIN_SIDE), max(w, MIN_SIDE))
        if self._size != (h, w):
            log.warning("the first frame is only %dx%d: the %s video is %dx%d (the least it "
                        "can be) and its frames are letterboxed into that", w, h, self.path,
                        self._size[1], self._size[0])
        fourcc = cv2.VideoWriter_fourcc(*CONTAINERS[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(
            str(self.temp), fourcc, self.fps, (self._size[1], self._size[0])
        )
        if not self._writer.isOpened():
            self._writer = None
            raise UserError(
                f"cannot write video {self.path}: OpenCV cannot write {self.path.suffix} "
                f"frames of {self._size[1]}x{self._size[0]} here; try an .avi name"
            )

    def close(self, keep: bool = True) -> int:
        """Finish the file and move it over ``path`` (``keep=False`` discards it).

        Returns the number of frames the finished file holds, read back from it; frames
        handed over but missing from it (a full disk) are the caller's failed frames.
        """
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()
        if not keep or writer is None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            return 0
        held = frames_held(self.temp, self.written)
        if held < 0:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            raise UserError(f"the video written for {self.path} cannot be read back (a full "
                            "disk?); nothing was saved")
        try:
            commit(self.temp, self.real)
        except OSError as err:
            kept = self._rescue()
            raise UserError(f"cannot write video {self.path}: {err.strerror or err}; the video "
                            f"is kept as {kept}: move it yourself") from None
        return held

    def _rescue(self) -> Path:
        """The run's video, under a name that no cleanup of temporary files ever removes
        (the temporary name is removed as a dead writer's leftover by the next write)."""
        for i in range(100):
            name = self.real.with_name(f"{self.real.stem}.unsaved-{i}{self.real.suffix}")
            if os.path.lexists(name):
                continue
            try:
                os.rename(self.temp, name)
                return name
            except OSError:
                break
        log.error("%s could not be renamed either: copy it now, before another edgeloc "
                  "write in %s removes it as a leftover", self.temp, self.temp.parent)
        return self.temp


__all__ = ["CONTAINERS", "MIN_SIDE", "VideoSaver", "check_video_name", "frames_held",
           "letterbox"]
