"""Handing names to OpenCV's video I/O safely: names it can take, an open that Ctrl-C and
SIGTERM can interrupt, and the pixel limit checked from the header before a frame is decoded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from data.images import pixel_limit_error
from runtime.errors import UserError

T = TypeVar("T")


def opencv_name(path: str | Path, what: str) -> str:
    """``path`` as OpenCV may take it: a name that is not UTF-8 (``cl\\xffip.avi``) crashes
    OpenCV's Python binding (a segfault), so it is refused with one line instead."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise UserError(f"{what} {shown}: its name is not UTF-8, which OpenCV cannot open; "
                        "rename it") from None
    return text


def _quiet_capture(target: int | str, api: int = cv2.CAP_ANY) -> cv2.VideoCapture:
    """Open a VideoCapture without OpenCV's backend chatter on stderr."""
    logging_api = getattr(cv2.utils, "logging", None)  # 4.12+; older builds: cv2.setLogLevel
    get = logging_api.getLogLevel if logging_api else getattr(cv2, "getLogLevel", None)
    set_ = logging_api.setLogLevel if logging_api else getattr(cv2, "setLogLevel", None)
    if get is None or set_ is None:
        return cv2.VideoCapture(target, api)
    level = get()
    set_(0)  # LOG_LEVEL_SILENT
    try:
        return cv2.VideoCapture(target, api)
    finally:
        set_(level)


def in_thread(call: Callable[[], T], cleanup: Callable[[T], None]) -> T:
    """``call()`` in a helper thread, waited for in short steps: OpenCV blocks in C while it
    opens a stream (FFmpeg's open and read timeouts are 30 s), where Ctrl-C and SIGTERM
    cannot reach it. They stop the wait at once; the abandoned result gets ``cleanup``."""
    box: dict[str, Any] = {}
    lock, done = threading.Lock(), threading.Event()

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 (handed to the waiting thread)
            box["error"] = err
        with lock:
            done.set()
            late = box.get("abandoned", False)
        if late and "value" in box:
            cleanup(box["value"])

    threading.Thread(target=work, name="edgeloc-open", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except BaseException:  # KeyboardInterrupt, Terminated: whoever finishes last cleans up
        with lock:
            box["abandoned"] = True
            finished = done.is_set()
        if finished and "value" in box:
            cleanup(box["value"])
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def connect(target: int | str, live: bool,
            max_pixels: int | None) -> tuple[cv2.VideoCapture, np.ndarray]:
    """Open ``target`` and read its first frame; one-line errors, the capture released."""
    cap = _quiet_capture(target)
    what = f"camera {target}" if isinstance(target, int) else str(target)
    try:
        if not cap.isOpened():
            if isinstance(target, int):
                raise UserError(
                    f"no camera at index {target}; pass --source video.mp4 or an image folder"
                )
            if live:
                raise UserError(
                    f"cannot open stream {target}; check the URL and that it is reachable"
                )
            raise UserError(f"cannot decode video {target}; convert it to .mp4 (H.264) or pass "
                            "an image folder")
        # From the header, before a frame is decoded (an 8000x8000 MJPG is 192 MB a frame).
        width, height = (int(cap.get(prop)) for prop in (cv2.CAP_PROP_FRAME_WIDTH,
                                                         cv2.CAP_PROP_FRAME_HEIGHT))
        too_big = pixel_limit_error(what, width, height, max_pixels)
        if too_big:
            raise UserError(too_big)
        ok, first = cap.read()
        if not ok or first is None:
            raise UserError(f"{what} opened but gave no frame; it is not a readable video source")
        height, width = first.shape[:2]
        too_big = pixel_limit_error(what, width, height, max_pixels)
        if too_big:
            raise UserError(too_big)
        return cap, first
    except BaseException:
        cap.release()
        raise


__all__ = ["connect", "in_thread", "opencv_name"]
