"""The one image reader: every package decodes image files here, and only here.

Policy (the same in training, calibration, export verification, benchmarks and the runtime):
- **decoded by content**, never by extension (a ``.jpg`` may be a PNG or a GIF);
- **upright, as displayed**: the EXIF orientation tag is applied, as browsers, phone
  galleries and web labelling tools (CVAT, Label Studio, Roboflow) show a photo, so a box
  drawn on the photo a user sees lands on the pixels the model sees;
- **bounded**: the pixel count is read from the header and checked against ``max_pixels``
  (default 50 MP, far above any camera frame) before a byte is decoded; files over
  ``MAX_FILE_BYTES`` and anything that is not a regular file (FIFO, device) are refused;
- **strict**: a truncated JPEG (no end-of-image marker after its last scan), a PNG whose
  chunks are cut short or fail their CRC, or a decoded size that differs from the header
  is an error for that image, never a half-grey picture. JPEG has no checksum, so flipped
  bits inside its entropy-coded data cannot be told from real pixels by any decoder.

Every failure raises ``ImageError`` (a ValueError) whose message names the file.
OpenCV decodes JPEG and most formats (fast, and what the runtime already uses); Pillow reads
headers and EXIF, decodes 8-bit PNGs (OpenCV's libpng prints a warning line for every PNG
with an odd colour profile) and what OpenCV cannot (GIF and a few rarer formats).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import UserError

# Files the folder readers pick up (an explicitly named file is tried whatever its name).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_MAX_PIXELS = 50_000_000  # a 50 MP limit: above every phone and camera frame
MAX_FILE_BYTES = 256 * 2**20  # an image file larger than this is refused unread

# 8-bit PNG modes Pillow decodes (16-bit ones go to OpenCV, which scales them to 8 bits).
_PILLOW_PNG_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA"})
# EXIF orientation -> the OpenCV operations that make the stored grid upright.
_ORIENT = {
    2: (("flip", 1),),
    3: (("rotate", cv2.ROTATE_180),),
    4: (("flip", 0),),
    5: (("rotate", cv2.ROTATE_90_CLOCKWISE), ("flip", 1)),
    6: (("rotate", cv2.ROTATE_90_CLOCKWISE),),
    7: (("rotate", cv2.ROTATE_90_COUNTERCLOCKWISE), ("flip", 1)),
    8: (("rotate", cv2.ROTATE_90_COUNTERCLOCKWISE),),
}


class ImageError(UserError):
    """An image file that cannot be used: missing, not a regular file, too large, broken."""


def is_image_name(path: str | Path) -> bool:
    """Whether a file name has one of the extensions the folder readers pick up."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def list_images(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Image files (by extension) in ``folder``, sorted; only regular files."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_name(p) and p.is_file())


def read_bytes(path: str | Path, *, what: str = "image", limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing FIFOs, devices, folders and files over ``limit``.

    Raises ``ImageError`` naming the file for every problem a user can fix.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{what} {path} does not exist") from None
    except OSError as err:  # symlink loops, permission on a parent folder, name too long
        raise ImageError(f"cannot open {what} {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{what} {path} is not a regular file (a FIFO, socket or device); "
                         "pass a file")
    if info.st_size > limit:
        raise ImageError(f"{what} {path} is {info.st_size / 2**20:.0f} MiB, over the "
                         f"{limit / 2**20:.0f} MiB limit for one {what}")
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check above cannot block us.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ImageError(f"cannot read {what} {path}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{what} {path} grew past the {limit / 2**20:.0f} MiB limit while read")
    return data


def read_image(path: str | Path, *, bgr: bool = False,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into (h, w, 3) uint8, RGB (BGR with ``bgr=True``), upright.

    See the module docstring for the policy; raises ``ImageError`` naming the file.
    """
    return decode_image(read_bytes(path), name=str(path), bgr=bgr, max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "image", bgr: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes under the module's policy; ``name`` goes into error messages."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    fmt, mode, (width, height), orientation = _header(data, name)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
            f"{max_pixels / 1e6:g} MP limit; pass --max-pixels {width * height} to allow it")
    _check_complete(data, fmt, name)
    image = None
    if fmt == "PNG" and mode in _PILLOW_PNG_MODES:  # libpng inside OpenCV prints warnings
        image = _decode_pillow(data, name)
    if image is None:
        buf = np.frombuffer(data, np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # BGR
    if image is None:
        image = _decode_pillow(data, name)  # GIF and friends; returns BGR
    if image.shape[1] != width or image.shape[0] != height:
        raise ImageError(f"{name} decodes to {image.shape[1]}x{image.shape[0]} but its header "
                         f"says {width}x{height}: the file is damaged")
    for op, arg in _ORIENT.get(orientation, ()):
        image = cv2.rotate(image, arg) if op == "rotate" else cv2.flip(image, arg)
    if not bgr:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``image`` as JPEG at ``quality`` and decode it again (compression artefacts for
    augmentation); channel order is kept as given."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else image


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as displayed (EXIF orientation applied), header only."""
    data = read_bytes(path)
    _, _, (width, height), orientation = _header(data, str(path))
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _header(data: bytes, name: str) -> tuple[str, str, tuple[int, int], int]:
    """(format, mode, (width, height) as stored, EXIF orientation 1-8) from the header alone."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own pixel limit applies, not Pillow's
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                pil = Image.open(io.BytesIO(data))  # lazy: reads the header, not the pixels
            finally:
                Image.MAX_IMAGE_PIXELS = limit
        with pil:
            fmt, mode, size = str(pil.format), str(pil.mode), pil.size
            # PngImageFile.getexif() decodes every pixel to look for an eXIf chunk after
            # them (900 MB for a 0.9 MB PNG declaring 30000x30000, before the pixel limit
            # is checked): the base method reads only the chunks seen before the pixels.
            try:
                exif = Image.Image.getexif(pil) if fmt == "PNG" else pil.getexif()
                orientation = int(exif.get(0x0112, 1) or 1)
            except Exception:  # a broken EXIF block must not hide the picture itself
                orientation = 1
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file (unknown format)") from None
    except Exception as err:  # Pillow raises many types for broken headers
        raise ImageError(f"{name} has a broken image header ({type(err).__name__}: {err})") from None
    if size[0] < 1 or size[1] < 1:
        raise ImageError(f"{name} declares an empty {size[0]}x{size[1]} image")
    return fmt, mode, (int(size[0]), int(size[1])), orientation if orientation in range(1, 9) else 1


def _check_complete(data: bytes, fmt: str, name: str) -> None:
    """Refuse truncated JPEG and PNG files, and PNG chunks that fail their CRC."""
    if fmt == "JPEG":
        # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker,
        # so the last start-of-scan (FFDA) and end-of-image (FFD9) markers are real ones.
        last_scan, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
        if last_scan < 0 or end < last_scan:
            raise ImageError(f"{name} is a truncated JPEG (no end-of-image marker after its "
                             "last scan); re-copy or re-export the file")
    elif fmt == "PNG":
        _check_png(data, name)


def _check_png(data: bytes, name: str) -> None:
    pos = 8  # after the signature
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        crc = struct.unpack(">I", data[end - 4:end])[0]
        if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise ImageError(f"{name} is a corrupt PNG (chunk {kind.decode('latin-1')!r} fails "
                             "its CRC check); re-copy or re-export the file")
        if kind == b"IEND":
            return
        pos = end
    raise ImageError(f"{name} is a truncated PNG (it ends before its IEND chunk); re-copy or "
                     "re-export the file")


def _decode_pillow(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as pil:
            rgb = np.asarray(pil.convert("RGB"))
    except Exception as err:  # truncated or corrupt: Pillow raises OSError, SyntaxError, ...
        raise ImageError(f"{name} cannot be decoded ({type(err).__name__}: {err})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTS", "ImageError", "decode_image", "image_size",
           "is_image_name", "jpeg_roundtrip", "list_images", "read_bytes", "read_image"]
