"""Device fingerprint: what a latency figure was measured on.

Lean on purpose (stdlib only): it runs on a Raspberry Pi with only ``.[runtime]``
installed. Library versions are read from package metadata, so TensorFlow is never
imported just to learn its version.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# CPU flags that change inference speed, as /proc/cpuinfo spells them -> our name.
_X86_FEATURES = {
    "sse4_2": "sse4.2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_int8": "amx_int8",
}
_ARM_FEATURES = {
    "neon": "neon",  # 32-bit kernels
    "asimd": "neon",  # AArch64 name of NEON
    "asimdhp": "fp16",  # half-precision arithmetic
    "fphp": "fp16",
    "asimddp": "dotprod",  # SDOT/UDOT: the int8 fast path of XNNPACK
    "i8mm": "i8mm",
    "sve": "sve",
    "bf16": "bf16",
}
# Packages whose versions matter for a benchmark (distribution names).
LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "ai-edge-litert",
    "tflite-runtime",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "edgeloc",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo() -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (Linux); empty elsewhere."""
    out: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            out.setdefault(key.strip().lower(), value.strip())
    return out


def cpu_model(info: dict[str, str] | None = None) -> str:
    """Human CPU name: x86 'model name', ARM implementer/part, or platform.processor()."""
    info = _cpuinfo() if info is None else info
    if info.get("model name"):
        return info["model name"]
    if "cpu part" in info:  # ARM: name the core from the MIDR part number
        parts = {
            "0xd03": "Cortex-A53",
            "0xd08": "Cortex-A72",
            "0xd0b": "Cortex-A76",
            "0xd05": "Cortex-A55",
            "0xd07": "Cortex-A57",
            "0xd0a": "Cortex-A75",
            "0xd41": "Cortex-A78",
            "0xd4b": "Cortex-A78C",
            "0xd46": "Cortex-A510",
            "0xd47": "Cortex-A710",
            "0xd0c": "Neoverse-N1",
            "0xd40": "Neoverse-V1",
        }
        return parts.get(info["cpu part"].lower(), f"ARM part {info['cpu part']}")
    if sys.platform == "darwin":
        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                or platform.processor()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def cpu_features(info: dict[str, str] | None = None) -> list[str]:
    """Instruction-set features that matter for inference (AVX2, VNNI, NEON, dot product...)."""
    info = _cpuinfo() if info is None else info
    flags = set((info.get("flags") or info.get("features") or "").split())
    found = {name for flag, name in {**_X86_FEATURES, **_ARM_FEATURES}.items() if flag in flags}
    if platform.machine().lower() in ("aarch64", "arm64"):
        found.add("neon")  # mandatory on AArch64
    return sorted(found)


def board_model() -> str | None:
    """Board name from the device tree (e.g. 'Raspberry Pi 5 Model B Rev 1.0'), if any."""
    text = _read("/proc/device-tree/model").strip("\x00 \n")
    return text or None


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs via nvidia-smi (name, driver, memory); empty when none or no driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as err:
        log.info("nvidia-smi failed: %s", err)
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2:
            rows.append(
                {
                    "name": fields[0],
                    "driver": fields[1],
                    "memory": fields[2] if len(fields) > 2 else "",
                }
            )
    return rows


def os_name() -> str:
    """Distribution name (PRETTY_NAME of /etc/os-release) or platform.platform()."""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M)
    return match.group(1) if match else platform.platform()


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (absent ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def memory_total_mb() -> float | None:
    match = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(match.group(1)) / 1024, 1) if match else None


def default_device_name(fp: dict[str, Any]) -> str:
    """A readable default name: the board if known, else CPU model and core count."""
    if fp.get("board"):
        return str(fp["board"])
    return f"{fp['cpu']} ({fp['cores_logical']} cores, {fp['arch']})"


def fingerprint() -> dict[str, Any]:
    """Everything a reader needs to compare latency figures across machines."""
    info = _cpuinfo()
    fp: dict[str, Any] = {
        "cpu": cpu_model(info),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_features": cpu_features(info),
        "board": board_model(),
        "memory_mb": memory_total_mb(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "gpus": gpus(),
        "hypervisor": "hypervisor" in (info.get("flags") or ""),
    }
    return fp
