"""The one image reader: decode by content, EXIF orientation, strictness and bounds."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from data.images import ImageError, decode_image, image_size, read_image
from tests.conftest import draw_box_image

H, W = 60, 80


def test_decodes_by_content_whatever_the_name(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    image = draw_box_image(H, W, (10, 5, 40, 30), value=200)
    for fmt in ("png", "gif", "jpg"):
        path = write_image(tmp_path / f"x_{fmt}.jpg", image, fmt=fmt)  # all named .jpg
        out = read_image(path)
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - image).mean() < 3
    bgr = read_image(tmp_path / "x_png.jpg", bgr=True)
    np.testing.assert_array_equal(bgr[..., ::-1], read_image(tmp_path / "x_png.jpg"))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg is not an image file"):
        read_image(tmp_path / "notes.jpg")


def exif_jpeg(path: Path, image: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = np.zeros((40, 100, 3), np.uint8)  # wide, with a bright block at the top left
    image[:10, :20] = 255
    path = exif_jpeg(tmp_path / "rotated.jpg", image, orientation=6)  # "rotate 90 clockwise"
    out = read_image(path)
    assert out.shape == (100, 40, 3)  # upright: tall
    assert out[:20, -10:].mean() > 200 and out[-20:, :10].mean() < 50  # block moved to top right
    assert image_size(path) == (40, 100)


def test_truncated_jpeg_and_png_are_refused(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for fmt in ("jpg", "png"):
        data = write_image(tmp_path / f"full.{fmt}", image).read_bytes()
        for cut in (0.3, 0.7, 0.99):
            (tmp_path / f"cut.{fmt}").write_bytes(data[: int(len(data) * cut)])
            with pytest.raises(ImageError, match="truncated"):
                read_image(tmp_path / f"cut.{fmt}")
    # A JPEG cut short and given a fake end marker is refused too (no marker after the scan).
    jpg = (tmp_path / "full.jpg").read_bytes()
    with pytest.raises(ImageError):
        decode_image(jpg[:100] + b"\xff\xd9", name="fake.jpg")
    # One flipped byte inside a PNG fails its CRC check.
    png = bytearray((tmp_path / "full.png").read_bytes())
    png[len(png) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="CRC"):
        decode_image(bytes(png), name="flipped.png")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(30000, 30000))
    with pytest.raises(ImageError, match=r"30000x30000 .*over the 50 MP limit; pass --max-pixels"):
        read_image(path)
    with pytest.raises(ImageError, match="over the 0.001 MP limit"):
        read_image(tmp_path / "huge.png", max_pixels=1000)


def test_special_files_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(fifo)
    assert time.monotonic() - t0 < 1.0  # refused, not blocked waiting for a writer
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageError, match="cannot open image .*loop.png"):
        read_image(loop)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", name="empty.png")
