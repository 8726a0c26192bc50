"""Untrained int8 stand-in models for ``benchmarks.runtime_overhead --standin``.

Latency does not depend on the weights, so an untrained model of a given architecture and
input size times like a trained one; building them takes TensorFlow, the timing does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def build_standins(folder: Path) -> list[Path]:
    """Untrained int8 stand-ins (latency does not depend on the weights): small_cnn alpha 1
    at 128 px (half the default model's width), MobileNetV2 0.35 at 160 px and 1.0 at 224."""
    from dataclasses import asdict

    from export.options import CalibrationOptions
    from export.tflite import export_tflite
    from train.model import ModelSpec, build_model

    calib = folder / "calib"
    calib.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(str(calib / f"{i}.png"), rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    specs = {
        "small_cnn_a1_128": ModelSpec(  # the demo preset before alpha 2
            backbone="small_cnn",
            image_size=128,
            vectorizer="attention",
            head_units=256,
            labels=("none", "cat"),
        ),
        "mobilenet_v2_035_160": ModelSpec(
            backbone="mobilenet_v2",
            image_size=160,
            alpha=0.35,
            head_units=128,
            labels=("none", "cat"),
        ),
        "mobilenet_v2_100_224": ModelSpec(  # the published Pi 4 reference model's size
            backbone="mobilenet_v2",
            image_size=224,
            alpha=1.0,
            head_units=256,
            labels=("none", "cat"),
        ),
    }
    out = []
    for name, spec in specs.items():
        target = folder / f"{name}_int8.tflite"
        if not target.exists():
            run = folder / name
            run.mkdir(exist_ok=True)
            build_model(spec).save(run / "model.keras")
            (run / "config.json").write_text(
                json.dumps({"model": {**asdict(spec), "labels": list(spec.labels)}, "data": {}})
            )
            calib_options = CalibrationOptions(str(calib), size=16)
            export_tflite(run, target, quantize="int8", calib=calib_options, verify=None)
        out.append(target)
    return out
