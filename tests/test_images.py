"""The one image reader: decode by content, EXIF orientation, strictness and bounds."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Callable

import cv2
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


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_from_raw(width: int, height: int, raw: bytes, interlaced: bool = False) -> bytes:
    """An 8-bit RGB PNG whose IDAT holds ``raw`` (filter bytes and pixels), valid CRCs and zlib."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries almost no pixel data."""
    return png_from_raw(width, height, b"\0" * 16)


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


def adam7_raw(image: np.ndarray) -> bytes:
    """The interlaced (Adam7) pixel data of an (H, W, 3) image, filter type 0 on every row."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    rows = (row for x0, y0, dx, dy in passes for row in image[y0::dy, x0::dx] if row.size)
    return b"".join(b"\0" + row.tobytes() for row in rows)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path: Path, orientation: int) -> None:
    """OpenCV and Pillow turn TIFF pixels by the tag themselves; the reader must not turn them
    again: a TIFF comes out as the PNG path shows the same picture with the same tag."""
    stored = np.zeros((40, 100, 3), np.uint8)  # (H, W, 3): wide and asymmetric
    stored[:10, :20] = 255
    stored[-5:, :, 1] = 200
    exif = Image.Exif()
    exif[0x0112] = orientation
    png = io.BytesIO()
    Image.fromarray(stored).save(png, format="PNG", exif=exif.tobytes())
    expected = decode_image(png.getvalue())
    for kwargs in ({"tiffinfo": {0x0112: orientation}}, {"exif": exif, "compression": "tiff_lzw"}):
        path = tmp_path / "photo.tif"
        Image.fromarray(stored).save(path, format="TIFF", **kwargs)
        out = read_image(path)
        np.testing.assert_array_equal(out, expected)
        assert image_size(path) == (out.shape[1], out.shape[0])


def progressive_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90, progressive=True)
    return buf.getvalue()


def test_jpeg_with_too_many_scans_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import data.images

    rng = np.random.default_rng(0)
    jpg = progressive_jpeg(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    assert jpg.count(b"\xff\xda") == 10  # libjpeg's progressive script
    last_scan, end = jpg.rfind(b"\xff\xda"), jpg.rfind(b"\xff\xd9")
    bomb = jpg[:end] + jpg[last_scan:end] * 200 + jpg[end:]  # 210 scans: a refinement, redone

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded before the scan count was checked")

    with monkeypatch.context() as patch:
        patch.setattr(data.images.cv2, "imdecode", no_decoding)
        patch.setattr(data.images, "_decode_pillow", no_decoding)
        with pytest.raises(ImageError, match=r"^bomb.jpg is a JPEG with over 100 scans"):
            decode_image(bomb, name="bomb.jpg")
    assert decode_image(jpg).shape == (32, 48, 3)
    # Scans and end markers after the picture's end marker (a phone's motion-photo video) are not
    # the picture's: neither counted nor taken for a truncated last scan.
    trailer = jpg + (b"\xff\xda\x00\x08" + bytes(range(200))) * 150
    np.testing.assert_array_equal(decode_image(trailer), decode_image(jpg))


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_and_given_an_end_marker_is_refused(progressive: bool) -> None:
    """libjpeg decodes a scan cut short as zero bits (flat grey rows), with a warning only."""
    yy, xx = np.mgrid[0:120, 0:160]
    image = np.dstack([xx * 1.5, yy * 2, (xx + yy) % 256]).astype(np.uint8)  # (120, 160, 3)
    if progressive:
        data = progressive_jpeg(image)
    else:
        data = cv2.imencode(".jpg", image[..., ::-1])[1].tobytes()
    assert np.abs(decode_image(data).astype(int) - image).mean() < 3
    for cut in (0.3, 0.5, 0.7, 0.95):
        with pytest.raises(ImageError, match=r"^cut.jpg is a (damaged or )?truncated JPEG"):
            decode_image(data[: int(len(data) * cut)] + b"\xff\xd9", name="cut.jpg")
    # A whole file of exact grey 128 looks like a cut one at first sight, and is accepted.
    grey = np.full((64, 64, 3), 128, np.uint8)
    np.testing.assert_array_equal(decode_image(cv2.imencode(".jpg", grey)[1].tobytes()), grey)


@pytest.mark.parametrize("interlaced", [False, True])
def test_png_with_fewer_rows_than_its_header_is_refused(interlaced: bool) -> None:
    """Valid CRCs and a complete zlib stream, but rows missing: decoders fill them black."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 21, 3), dtype=np.uint8)  # odd sizes: short Adam7 passes
    raw = adam7_raw(image) if interlaced else b"".join(b"\0" + row.tobytes() for row in image)
    np.testing.assert_array_equal(decode_image(png_from_raw(21, 30, raw, interlaced)), image)
    for rows in (1, 7):  # the last rows (interlaced: of the last pass), on a row boundary
        keep = len(raw) - rows * (1 + 21 * 3)
        with pytest.raises(ImageError, match=r"^short.png is a damaged or truncated PNG"):
            decode_image(png_from_raw(21, 30, raw[:keep], interlaced), name="short.png")
    with pytest.raises(ImageError, match=r"^short.png .*truncated"):  # Pillow finds a cut row
        decode_image(png_from_raw(21, 30, raw[:-1], interlaced), name="short.png")


def test_png_row_check_accepts_every_bit_depth() -> None:
    """Flat images, so the row check runs: 1-bit, palette, grey, alpha and 16-bit PNGs."""
    flat = Image.fromarray(np.zeros((13, 11), np.uint8))
    images = [(flat.convert(mode), {}) for mode in ("1", "L", "LA", "RGB", "RGBA", "P")]
    images += [(flat.convert("P"), {"bits": 2}), (flat.convert("I;16"), {})]
    for pil, options in images:
        buf = io.BytesIO()
        pil.save(buf, format="PNG", **options)
        assert decode_image(buf.getvalue(), name=pil.mode).shape == (13, 11, 3)


def test_float_tiff_is_refused(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((20, 30)).astype(np.float32)  # 0..1: would be black
    Image.fromarray(values).save(tmp_path / "grey.tif")  # mode "F"
    with pytest.raises(ImageError, match=r"grey.tif stores 32-bit floating-point samples, a sample"):
        read_image(tmp_path / "grey.tif")
    (tmp_path / "rgb.tif").write_bytes(cv2.imencode(".tiff", np.dstack([values] * 3))[1].tobytes())
    with pytest.raises(ImageError, match=r"rgb.tif is a TIFF whose sample format"):
        read_image(tmp_path / "rgb.tif")
