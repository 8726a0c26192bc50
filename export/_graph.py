"""The serving graph both exporters convert: contract-typed pixels in, ``box`` and ``score`` out."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and Python start-up chatter (call before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float reference on CPU


@contextlib.contextmanager
def native_output_captured() -> Iterator[None]:
    """Send what C++ code (converters, XNNPACK) prints to fds 1 and 2 into the debug log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("native output:\n%s", text[-20000:])


def serving_fn(model: Any, input_dtype: str) -> Callable:
    """A function from the exported input tensor to {"box", "score"}.

    ``uint8`` takes raw pixels and casts them (exact, so int8 models need no input scale);
    ``int8`` takes pixel - 128 (the contract's int8 input); ``float32`` takes 0..255 floats.
    """
    import tensorflow as tf

    def serve(image):  # (B, S, S, 3)
        x = tf.cast(image, tf.float32)
        if input_dtype == "int8":
            x = x + 128.0
        out = model(x, training=False)
        return {
            "box": tf.identity(out["box"], name="box"),  # (B, 4)
            "score": tf.identity(out["score"], name="score"),
        }  # (B, K)

    return serve


def input_spec(size: int, input_dtype: str) -> Any:
    import tensorflow as tf

    return tf.TensorSpec((None, size, size, 3), tf.as_dtype(input_dtype), name="image")


def write_saved_model(model: Any, size: int, input_dtype: str, folder: Path) -> Path:
    """Write a SavedModel whose ``serving_default`` signature is the serving graph."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serving_fn(model, input_dtype),
        input_signature=[input_spec(size, input_dtype)],
    )
    archive.write_out(str(folder), verbose=False)
    return folder


def tf_function(model: Any, size: int, input_dtype: str) -> Any:
    """The serving graph as a tf.function with a fixed input signature (for tf2onnx)."""
    import tensorflow as tf

    return tf.function(
        serving_fn(model, input_dtype), input_signature=[input_spec(size, input_dtype)]
    )
