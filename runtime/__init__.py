"""edgeloc lean runtime: numpy, OpenCV and one inference engine; never TensorFlow.

from runtime import Localizer
loc = Localizer.load("runtime/models/cat_int8.tflite")
result = loc.predict(rgb_image)   # result.box (x1, y1, x2, y2) pixels, .label, .score
"""

from runtime.backends import BACKENDS
from runtime.contract import Contract
from runtime.localizer import Localizer, Result

__all__ = ["BACKENDS", "Contract", "Localizer", "Result"]
