"""Byte-level checks of image files, run by the reader (``data.images``) before and after
decoding: the structure a decoder skips over or forgives (a JPEG's marker walk and scan count,
a PNG's chunk CRCs and pixel-row count, a TIFF's orientation tag), and the reader's error."""

from __future__ import annotations

import re
import struct
import zlib

from runtime.errors import UserError

# Each JPEG scan is one more pass over every coefficient (about 10 ms at 16 MP), so 3000
# tiny scans made a 183 KB file take 33 s. libjpeg writes 10 scans for a progressive colour
# file (6 grey); an EXIF thumbnail's scans sit inside APP1 and are not counted.
MAX_JPEG_SCANS = 100
# Start-of-frame markers of DCT JPEGs (baseline, extended, progressive; Huffman or arithmetic).
_JPEG_DCT_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC9, 0xCA})
# A JPEG marker: 0xFF that is neither stuffed (FF00) nor a restart (FFD0-FFD7).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
# PNG colour type -> samples per pixel (grey, RGB, palette, grey + alpha, RGBA).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class ImageError(UserError):
    """An image file that cannot be used: missing, not a regular file, too large, broken."""


def check_jpeg(data: bytes, name: str) -> tuple[int, int]:
    """(offset of the end-of-image marker, number of scans) of a JPEG's main picture.

    Walks the markers as libjpeg does, so an EXIF thumbnail (inside APP1) and data after
    the end marker (a phone's motion-photo video) are skipped. Refuses, before any
    decoding, a file that ends before its end marker, one with over ``MAX_JPEG_SCANS``
    scans, and one whose scans leave coefficients unsent (a progressive file cut between
    two scans and given an end marker decodes blurred, without a warning).
    """
    pos, scans, sent = 2, 0, {}  # sent: component id -> bit mask of coefficients sent whole
    while match := _JPEG_MARKER.search(data, pos):  # skips entropy-coded data at C speed
        pos, marker = match.start(), data[match.start() + 1]
        if marker == 0xD9:
            if not scans:
                break
            if any(mask != 2**64 - 1 for mask in sent.values()):
                raise ImageError(f"{name} is a damaged or truncated JPEG (its last scans are "
                                 "missing: a cut file with an end marker added?); re-copy or "
                                 "re-export the file")
            return pos, scans
        if marker in (0xFF, 0x01, 0xD8):  # a fill byte, standalone markers
            pos += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            break
        body = data[pos + 4:pos + 2 + length]  # the segment after its length field
        if marker in _JPEG_DCT_FRAMES and len(body) > 5:  # ids of the frame's components
            sent = dict.fromkeys(body[6:6 + 3 * body[5]:3], 0)
        elif marker == 0xDA and body:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(f"{name} is a JPEG with over {MAX_JPEG_SCANS} scans (a normal "
                                 "progressive file has about 10); each scan costs a pass over "
                                 "every pixel, so it is refused; re-export the file")
            first, last, approx = body[1 + 2 * body[0]:4 + 2 * body[0]].ljust(3, b"\xff")
            if approx & 15 == 0:  # coefficients first..last sent to their last bit
                band = (2 << min(last, 63)) - (1 << min(first, 64))
                for component in body[1:1 + 2 * body[0]:2]:
                    if component in sent:
                        sent[component] |= max(band, 0)
        pos += 2 + length
    raise ImageError(f"{name} is a truncated JPEG (no end-of-image marker after its "
                     "last scan); re-copy or re-export the file")


def check_png(data: bytes, name: str) -> tuple[bytes, list[memoryview]]:
    """Refuse a PNG cut short or with a chunk failing its CRC; returns its IHDR data and
    IDAT chunks for ``check_png_rows``."""
    view, pos, ihdr, idat = memoryview(data), 8, b"", []  # pos: after the signature
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        crc = struct.unpack(">I", data[end - 4:end])[0]
        if zlib.crc32(view[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise ImageError(f"{name} is a corrupt PNG (chunk {kind.decode('latin-1')!r} fails "
                             "its CRC check); re-copy or re-export the file")
        if kind == b"IHDR":
            ihdr = data[pos + 8:end - 4]
        elif kind == b"IDAT":
            idat.append(view[pos + 8:end - 4])
        elif kind == b"IEND":
            return ihdr, idat
        pos = end
    raise ImageError(f"{name} is a truncated PNG (it ends before its IEND chunk); re-copy or "
                     "re-export the file")


def check_png_rows(ihdr: bytes, idat: list[memoryview], name: str) -> None:
    """Refuse IDAT data that inflates to fewer bytes than the header's rows need: decoders
    fill the missing rows with black, even when the zlib stream and every CRC are valid."""
    if len(ihdr) != 13 or ihdr[9] not in _PNG_SAMPLES:
        return  # Pillow read this header; leave odd ones to the decoder
    width, height, depth, colour, interlaced = struct.unpack(">IIBB2xB", ihdr)
    bits = depth * _PNG_SAMPLES[colour]  # per pixel
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    need = 0
    for x0, y0, dx, dy in passes:  # each non-empty row: one filter byte, then the pixels
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            need += rows * (1 + (cols * bits + 7) // 8)
    inflate, got = zlib.decompressobj(), 0
    try:
        for chunk in idat:  # inflated 1 MiB at a time, and only as far as the rows need
            while chunk and got < need:
                got += len(inflate.decompress(chunk, 2**20))
                chunk = inflate.unconsumed_tail
    except zlib.error:
        pass
    if got < need:
        raise ImageError(f"{name} is a damaged or truncated PNG (its pixel data holds {got} of "
                         f"the {need} bytes its {width}x{height} header needs); re-copy or "
                         "re-export the file")


def tiff_orientation_cleared(data: bytes, name: str) -> bytes:
    """The TIFF with its Orientation tag (first IFD) set to 1, so decoders return the stored
    grid. OpenCV (despite IMREAD_IGNORE_ORIENTATION) and Pillow turn TIFF pixels by the tag
    themselves, unlike JPEG, PNG and WebP ones: turned again, orientation 3 came out
    unrotated and 5-8 upside down."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43  # BigTIFF: 8-byte offsets
    try:
        if big:
            ifd = struct.unpack_from(order + "Q", data, 8)[0]
            first, step, count = ifd + 8, 20, struct.unpack_from(order + "Q", data, ifd)[0]
        else:
            ifd = struct.unpack_from(order + "I", data, 4)[0]
            first, step, count = ifd + 2, 12, struct.unpack_from(order + "H", data, ifd)[0]
        for entry in range(first, first + count * step, step):
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag == 0x0112 and kind in (3, 4):  # SHORT or LONG, held in the entry itself
                at = entry + step - (8 if big else 4)
                one = struct.pack(order + ("H" if kind == 3 else "I"), 1)
                return data[:at] + one + data[at + len(one):]
    except struct.error:  # an IFD offset past the end of the file
        pass
    raise ImageError(f"{name} has a TIFF orientation tag this reader cannot rewrite; save the "
                     "image upright, without the tag")
