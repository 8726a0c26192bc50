"""ONNX Runtime execution providers: names and aliases, what is installed, GPU preload, fallback.

A provider that is asked for but missing is dropped with a warning and the session runs on
CPU: a model must still load on a machine without the accelerator it was tuned for.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from runtime.errors import UserError

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
_GPU = {PROVIDERS["cuda"], PROVIDERS["tensorrt"]}


def resolve_providers(requested: Any, available: list[str]) -> list[str]:
    """Map provider names or aliases to the ones installed; warn about and drop the rest."""
    if not requested:
        return ["CPUExecutionProvider"]
    if isinstance(requested, str):
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    elif not isinstance(requested, list | tuple):
        raise UserError(
            f"providers must be a name or a list of names, got {requested!r}; valid: "
            f"{', '.join(PROVIDERS)}"
        )
    out = []
    for p in requested:
        full = PROVIDERS.get(str(p).lower(), p)
        if full not in PROVIDERS.values():
            raise UserError(f"unknown ONNX Runtime provider {p!r}; valid: {', '.join(PROVIDERS)}")
        if full in available:
            out.append(full)
        else:
            # stacklevel 5: resolve_providers <- _onnx_factory <- open_backend <- Localizer.load
            warnings.warn(
                f"ONNX Runtime provider {full} is not available here (installed: "
                f"{', '.join(available)}); falling back to CPU",
                stacklevel=5,
            )
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def preload_gpu_libraries(ort: Any, chosen: list[str]) -> None:
    """Load the CUDA/cuDNN libraries of the nvidia-* pip wheels (onnxruntime-gpu >= 1.21)
    when a GPU provider is chosen, so it starts without a system-wide CUDA install."""
    if not set(chosen) & _GPU:
        return
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as err:  # missing wheels: the session then falls back, with a warning
            log.debug("onnxruntime.preload_dlls failed: %s", err)


def warn_dropped(chosen: list[str], ran: list[str]) -> None:
    """Warn about providers the session was given but did not start.

    onnxruntime-gpu lists CUDA even without a usable GPU; the session is where it falls
    back (onnxruntime issue 21424): say so, as for a provider that is not installed.
    """
    dropped = [p for p in chosen if p not in ran]
    if dropped:
        # stacklevel 5: warn_dropped <- _onnx_factory <- open_backend <- Localizer.load
        warnings.warn(f"ONNX Runtime provider {', '.join(dropped)} did not start here (no usable "
                      f"GPU, or its CUDA/TensorRT libraries are missing); running on {ran[0]}",
                      stacklevel=5)
