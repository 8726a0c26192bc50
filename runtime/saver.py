"""``--save``: every processed frame into one video file, written atomically.

The video takes the first frame's size; a frame of another size (an image folder of mixed
sizes, a stream that changes resolution) is letterboxed into it, never dropped. Frames go
to a hidden temporary file beside the target, moved over it when the run ends, and the
frame count the container reports is checked against the frames handed over.
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

log = logging.getLogger(__name__)

# --save containers -> the codec written into them. Other names are refused before a run
# starts: OpenCV opens a writer for "out.png" too, then keeps one frame of the whole video.
CONTAINERS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


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


class VideoSaver:
    """Writes BGR frames to ``path`` (a name in ``CONTAINERS``); ``close`` commits it."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = check_video_name(Path(path)), fps
        remove_leftovers(self.path.parent)
        self.temp = temp_name(self.path)
        self.written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> bool:
        """Add one frame (letterboxed to the video size); False when it could not be written."""
        if self._writer is None:
            self._size = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*CONTAINERS[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(
                str(self.temp), fourcc, self.fps, (self._size[1], self._size[0])
            )
            if not self._writer.isOpened():
                self._writer = None
                raise UserError(
                    f"cannot write video {self.path}: OpenCV cannot write "
                    f"{self.path.suffix} here or the folder is not writable; try an .avi name "
                    "in a writable folder"
                )
        try:
            self._writer.write(letterbox(frame, self._size))
        except cv2.error as err:
            log.warning("frame not written to %s: %s", self.path, err)
            return False
        self.written += 1
        return True

    def close(self, keep: bool = True) -> int:
        """Finish the file and move it over ``path`` (``keep=False`` discards it).

        Returns the number of frames the finished file holds by its own count; frames
        handed over but missing from it (a full disk) are the caller's failed frames.
        """
        if self._writer is None:
            return 0
        self._writer.release()
        self._writer = None
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            return 0
        cap = cv2.VideoCapture(str(self.temp))
        opened = cap.isOpened()
        held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if opened else 0
        cap.release()
        if not opened:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            raise UserError(f"the video written for {self.path} cannot be read back (a full "
                            "disk?); nothing was saved")
        if held <= 0:  # a container that does not say: trust the writer
            held = self.written
        try:
            commit(self.temp, self.path)
        except OSError as err:
            raise UserError(f"cannot write video {self.path}: {err.strerror or err}") from None
        return min(held, self.written)


__all__ = ["CONTAINERS", "VideoSaver", "check_video_name", "letterbox"]
