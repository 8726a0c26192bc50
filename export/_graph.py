"""The serving graph both exporters convert: contract-typed pixels in, ``box`` and ``score`` out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import quiet


def quiet_tensorflow(verbose: bool = False) -> None:
    """TensorFlow for an export: oneDNN off (a bit-stable float reference on CPU, the same
    numbers in verification as in the converted graph), start-up lines silenced unless
    ``verbose`` (see ``runtime.quiet``). Call before anything imports TensorFlow."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    quiet.quiet_tensorflow(verbose)


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
