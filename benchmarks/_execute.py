"""Run planned cells, one process each, and turn their raw output into result cells."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._schema import new_cell
from runtime.atomic import scratch_dir

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
_CELL_KEYS_FROM_CHILD = (
    "status",
    "reason",
    "backend",
    "provider",
    "device",
    "precision",
    "input_size",
    "n_eval",
    "mean_iou",
    "corloc",
    "import_ms",
    "load_ms",
    "first_ms",
    "latency_ms",
    "fps",
    "peak_rss_mb",
    "base_rss_mb",
    "pipeline",
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    return env


def _crash_reason(proc: subprocess.CompletedProcess) -> str:
    code = proc.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = f"the cell process crashed ({name})"
    else:
        what = f"the cell process exited with code {code}"
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()][-1:]
    return what + (f": {tail[0][:200]}" if tail else "")


def run_spec(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one cell spec in a fresh Python process; a crash or timeout becomes an error."""
    with scratch_dir("cell") as tmp:  # a killed run's folder goes on the next run
        spec_path, out_path = tmp / "spec.json", tmp / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "benchmarks._cell", str(spec_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
        except subprocess.TimeoutExpired:
            return {
                "status": "error",
                "reason": f"timed out after {timeout:.0f} s (--cell-timeout)",
            }
        if out_path.is_file():
            try:
                return json.loads(out_path.read_text())
            except json.JSONDecodeError:
                pass
        log.debug("cell stderr:\n%s", proc.stderr)
        return {"status": "error", "reason": _crash_reason(proc)}


def to_cell(variant: Any, spec: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """A schema cell from the variant, its spec and what the cell process measured."""
    cell = new_cell(
        variant=variant.name,
        kind=variant.kind,
        file=str(variant.file) if variant.file else None,
        format=variant.format,
        precision=variant.precision,
        backend=spec["backend"],
        provider=spec.get("provider"),
        device=spec.get("device", "cpu"),
        threads=spec.get("threads"),
        size_bytes=variant.file.stat().st_size if variant.file and variant.file.is_file() else None,
    )
    for key in _CELL_KEYS_FROM_CHILD:
        if raw.get(key) is not None:
            cell[key] = raw[key]
    cell["notes"] = list(dict.fromkeys(raw.get("notes") or []))  # unique, in order
    return cell


def skipped_cell(
    variant: Any, runner: str, backend: str, provider: str | None, device: str, reason: str
) -> dict[str, Any]:
    """A cell that was not run here, with the reason."""
    del runner
    return new_cell(
        variant=variant.name,
        kind=variant.kind,
        file=str(variant.file) if variant.file else None,
        format=variant.format,
        precision=variant.precision,
        backend=backend,
        provider=provider,
        device=device,
        status="skipped",
        reason=reason,
        size_bytes=variant.file.stat().st_size if variant.file and variant.file.is_file() else None,
    )
