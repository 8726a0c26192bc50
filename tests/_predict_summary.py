"""One prediction as plain JSON data, so a backend can be checked in another interpreter.

    python -m tests._predict_summary MODEL BACKEND SIZE

Imports only numpy and the lean runtime: it runs in the tflite-runtime side venv too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from runtime import Localizer


def summary(model: str | Path, backend: str, size: int) -> dict:
    """Predict on a fixed random 640x480 image and call ``invoke`` on zeros; plain data out."""
    loc = Localizer.load(model, backend=backend, threads=1)
    r = loc.predict(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    box, score = loc.invoke(np.zeros((1, size, size, 3), np.uint8))
    heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx")]
    return {
        "backend": loc.backend_name,
        "labels": loc.contract.labels,
        "box": list(r.box),
        "label": r.label,
        "present": r.present,
        "score": r.score,
        "scores": r.scores.tolist(),
        "latency_ms": r.latency_ms,
        "total_ms": r.total_ms,
        "provider": r.provider,
        "raw": [list(box.shape), list(score.shape)],
        "raw_dtype": str(box.dtype),
        "numpy": np.__version__,
        "heavy": heavy,
    }


if __name__ == "__main__":
    print(json.dumps(summary(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
