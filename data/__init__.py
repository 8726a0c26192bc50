"""edgeloc data layer: the one image reader, the data sources and the augmentations.

Lean on purpose (numpy, OpenCV and Pillow; never TensorFlow): the runtime, the benchmarks
on a Raspberry Pi, export calibration and training all read pixels through it.

    from data import open_source, read_image
    source = open_source("voc", data_dir="photos/", split="train")
    sample = source[0]            # .image (h, w, 3) uint8 RGB, .box (4,) x1 y1 x2 y2 in [0, 1]
"""

from data.images import IMAGE_EXTS, ImageError, read_image
from data.catalog import SOURCES, get_source, open_source
from data.sources import Sample, Source, SourceOptions

__all__ = ["IMAGE_EXTS", "SOURCES", "ImageError", "Sample", "Source", "SourceOptions",
           "get_source", "open_source", "read_image"]
