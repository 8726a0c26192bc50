"""The one image reader: every package decodes image files here, and only here.

Policy (the same in training, calibration, export verification, benchmarks and the runtime):
- **decoded by content**, never by extension (a ``.jpg`` may be a PNG or a GIF);
- **upright, as displayed**: the EXIF orientation tag is applied, once, as browsers, phone
  galleries and web labelling tools (CVAT, Label Studio, Roboflow) show a photo, so a box
  drawn on the photo a user sees lands on the pixels the model sees;
- **bounded**: the pixel count is read from the header and checked against ``max_pixels``
  (default 50 MP, far above any camera frame) before a byte is decoded; files over
  ``MAX_FILE_BYTES`` and anything that is not a regular file (FIFO, device) are refused;
- **strict**: a truncated JPEG (even one given an end marker after the cut), a JPEG with
  over ``MAX_JPEG_SCANS`` scans, a PNG cut short, failing a CRC or short of pixel rows,
  float samples, or a decoded size that differs from the header is an error for that
  image, never a half-grey picture. JPEG has no checksum, so flipped bits inside its
  entropy-coded data cannot be told from real pixels by any decoder.

Every failure raises ``ImageError`` (a ValueError) whose message names the file.
OpenCV decodes JPEG and most formats (fast, and what the runtime already uses); Pillow reads
headers and EXIF, decodes 8-bit PNGs (OpenCV's libpng prints a warning line for every PNG
with an odd colour profile), progressive JPEGs (see ``_check_jpeg_scan``) and what OpenCV
cannot (GIF and a few rarer formats).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from data.image_checks import (
    MAX_JPEG_SCANS,
    ImageError,
    check_jpeg,
    check_png,
    check_png_rows,
    tiff_orientation_cleared,
)

if TYPE_CHECKING:
    from PIL import Image

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
# Leading bytes of the formats this reader decodes (WebP, BMP and Netpbm in
# ``starts_like_image``): how a file is known to be an image whatever its name.
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG (JFIF, EXIF, .jpe, .jfif)
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a", b"GIF89a",
    *_TIFF_MAGIC,
    b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51",  # JPEG 2000
)
_BMP_HEADERS = (12, 40, 52, 56, 64, 108, 124)  # the DIB header sizes BMP files use
# Bytes put before a JPEG's end marker to see whether its last scan needs more data than it
# has (no 0xFF, and not the zero bits libjpeg pads a cut scan with).
_JPEG_FILLER = b"\x5a\xa5" * 32
_LUMA = np.array([0.114, 0.587, 0.299])  # BGR -> the JPEG's Y


def starts_like_image(head: bytes) -> bool:
    """Whether a file's first 32 bytes are those of an image format this reader decodes."""
    if head.startswith(_IMAGE_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return True
    # Netpbm (PBM/PGM/PPM/PAM): "P1".."P7" and a whitespace.
    return len(head) > 2 and head[0] == ord("P") and chr(head[1]) in "1234567" \
        and chr(head[2]) in " \t\r\n"


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


def pixel_limit_error(name: str, width: int, height: int, max_pixels: int | None) -> str | None:
    """The one-line refusal of a ``width`` x ``height`` image or frame over ``max_pixels``
    (None: within it, or no limit). Shared by the image reader and the video sources."""
    pixels = width * height
    if max_pixels is None or pixels <= max_pixels:
        return None
    shown = f"{pixels / 1e6:.0f}" if pixels >= 1e6 else f"{pixels / 1e6:.3g}"
    return (f"{name} is {width}x{height} ({shown} MP), over the {max_pixels / 1e6:g} MP limit; "
            f"pass --max-pixels {pixels} to allow it")


def decode_image(data: bytes, *, name: str = "image", bgr: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes under the module's policy; ``name`` goes into error messages."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    fmt, mode, (width, height), orientation = _header(data, name)
    too_big = pixel_limit_error(name, width, height, max_pixels)
    if too_big:
        raise ImageError(too_big)
    if fmt == "TIFF" and orientation != 1:
        data = tiff_orientation_cleared(data, name)
    image = _decode_strict(data, fmt, mode, name)  # (H, W, 3) BGR, as stored
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


def orientation(path: str | Path) -> int:
    """The EXIF orientation (1-8) of an image file, from its header alone."""
    return _header(read_bytes(path), str(path))[3]


def _header(data: bytes, name: str) -> tuple[str, str, tuple[int, int], int]:
    """(format, mode, (width, height) as stored, EXIF orientation 1-8) from the header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_pillow(data) as pil:  # lazy: reads the header, not the pixels
            fmt, mode, size = str(pil.format), str(pil.mode), pil.size
            if fmt == "TIFF":  # Pillow reports the size turned by the orientation tag
                size = (pil.tag_v2.get(256, size[0]), pil.tag_v2.get(257, size[1]))
            # PngImageFile.getexif() decodes every pixel to look for an eXIf chunk after
            # them (900 MB for a 0.9 MB PNG declaring 30000x30000, before the pixel limit
            # is checked): the base method reads only the chunks seen before the pixels.
            try:
                exif = Image.Image.getexif(pil) if fmt == "PNG" else pil.getexif()
                orientation = int(exif.get(0x0112, 1) or 1)
            except Exception:  # a broken EXIF block must not hide the picture itself
                orientation = 1
    except UnidentifiedImageError:
        if data.startswith(_TIFF_MAGIC):
            raise ImageError(f"{name} is a TIFF whose sample format or layout this reader does "
                             "not support (e.g. float RGB); save it as an 8- or 16-bit image"
                             ) from None
        raise ImageError(f"{name} is not an image file (unknown format)") from None
    except Exception as err:  # Pillow raises many types for broken headers
        raise ImageError(f"{name} has a broken image header ({type(err).__name__}: {err})") from None
    if size[0] < 1 or size[1] < 1:
        raise ImageError(f"{name} declares an empty {size[0]}x{size[1]} image")
    return fmt, mode, (int(size[0]), int(size[1])), orientation if orientation in range(1, 9) else 1


def _check_jpeg_scan(data: bytes, end: int, name: str, decoded: np.ndarray | None) -> None:
    """Refuse a JPEG whose last scan ends before its last pixel (a cut file given an end
    marker at ``end``), which libjpeg decodes as zero bits with a warning on stderr only.

    Bytes put before the end marker change nothing in a complete scan (libjpeg skips them)
    but change the pixels of one that runs short. Pillow decodes both: it keeps libjpeg's
    warnings quiet, where OpenCV would print "extraneous bytes" for every file checked.
    """
    decoded = _decode_pillow(data, name) if decoded is None else decoded
    if not np.array_equal(decoded, _decode_pillow(data[:end] + _JPEG_FILLER + data[end:], name)):
        raise ImageError(f"{name} is a damaged or truncated JPEG (its scan data ends before the "
                         "last pixel: a cut file with an end marker added?); re-copy or "
                         "re-export the file")


def _decode_strict(data: bytes, fmt: str, mode: str, name: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR pixels as stored, refusing damaged files (the module's policy)."""
    if mode == "F":  # OpenCV refuses these; Pillow's convert("RGB") clips 0..1 to black
        raise ImageError(f"{name} stores 32-bit floating-point samples, a sample format this "
                         "reader does not support; save it as an 8- or 16-bit image")
    jpeg = fmt in ("JPEG", "MPO")  # MPO: a JPEG followed by more pictures (a phone's depth map)
    jpeg_end, jpeg_scans = check_jpeg(data, name) if jpeg else (0, 0)
    png = check_png(data, name) if fmt == "PNG" else None
    rows_checked = png is not None and mode not in _PILLOW_PNG_MODES
    if rows_checked:  # libpng refuses short pixel data, but then Pillow would decode it
        check_png_rows(*png, name)
    # A progressive JPEG's last scan is checked for a cut (below) by two Pillow decodes, the
    # first of which is the picture (the same pixels as OpenCV's on all 232 dataset JPEGs).
    progressive = jpeg and jpeg_scans > 1
    image = _decode_pillow(data, name) if progressive else _decode(data, fmt, mode, name)
    # A cut single-scan JPEG ends in luma 128 (zero coefficients; chroma upsampling may blend
    # in the MCU above): only such files (2 of 232 in the datasets) pay for the check; a
    # progressive file's missing refinements leave no such trace.
    if progressive or (jpeg and abs(image[-1, -1] @ _LUMA - 128) <= 1.5):
        _check_jpeg_scan(data, jpeg_end, name, image if progressive else None)
    # Pillow leaves the rows a short PNG lacks zero, so its last row (or, interlaced, the
    # last odd one) is one colour: only such PNGs pay for inflating the pixel data again
    # (+45% PNG decode time on the dataset PNGs if every one did).
    tail = image[-2:]  # (2 or 1, W, 3)
    if png and not rows_checked and (len(image) < 2 or (tail == tail[:, :1]).all(axis=(1, 2)).any()):
        check_png_rows(*png, name)
    return image


def _decode(data: bytes, fmt: str, mode: str, name: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR pixels as stored (no orientation applied)."""
    if fmt == "PNG" and mode in _PILLOW_PNG_MODES:  # libpng inside OpenCV prints warnings
        return _decode_pillow(data, name)
    buf = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return image if image is not None else _decode_pillow(data, name)  # GIF and friends


def _open_pillow(data: bytes) -> Image.Image:
    """``PIL.Image.open`` without Pillow's own pixel limit: ours was checked from the header."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _decode_pillow(data: bytes, name: str) -> np.ndarray:
    try:
        with _open_pillow(data) as pil:
            mode = pil.mode  # "I", "I;16", ...: 32- or 16-bit integers, clipped by convert()
            rgb = None if mode.startswith("I") else np.asarray(pil.convert("RGB"))
    except Exception as err:  # truncated or corrupt: Pillow raises OSError, SyntaxError, ...
        raise ImageError(f"{name} cannot be decoded ({type(err).__name__}: {err})") from None
    if rgb is None:
        raise ImageError(f"{name} stores integer samples (Pillow mode {mode}) that OpenCV cannot "
                         "decode, a sample format this reader does not support; save it as an "
                         "8-bit image")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTS", "MAX_JPEG_SCANS", "ImageError", "decode_image",
           "image_size", "is_image_name", "jpeg_roundtrip", "list_images", "orientation",
           "pixel_limit_error", "read_bytes", "read_image", "starts_like_image"]
