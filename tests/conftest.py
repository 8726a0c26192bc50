"""Shared test fixtures. Keep each fixture small and documented; add new ones below."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (``cmd &``) inherits SIGINT ignored, and so would
    every CLI it starts: the Ctrl-C tests need Ctrl-C to reach them."""
    from benchmarks._findings import let_ctrl_c_through

    let_ctrl_c_through()


# ------------------------------------------------------------------ data fixtures


def draw_box_image(
    height: int, width: int, box_px: tuple[int, int, int, int] | None, value: int = 255
) -> np.ndarray:
    """(height, width, 3) uint8 black image with a filled rectangle x1, y1, x2, y2 (exclusive)."""
    image = np.zeros((height, width, 3), np.uint8)
    if box_px is not None:
        x1, y1, x2, y2 = box_px
        image[y1:y2, x1:x2] = value
    return image


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Factory: write an RGB image to a path in a given container format (by content, not name).

    ``write_image(path, image, fmt=None)``: ``fmt`` is ``png``, ``jpg``, ``gif`` or None
    (from the file extension); a ".jpg" path with ``fmt="gif"`` makes a disguised GIF.
    """

    def write(path: Path, image: np.ndarray, fmt: str | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt == "gif":
            from PIL import Image

            Image.fromarray(image).save(path, format="GIF")
        else:
            ok, data = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else fmt}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            assert ok, fmt
            path.write_bytes(data.tobytes())
        return path

    return write
