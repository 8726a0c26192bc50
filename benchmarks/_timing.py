"""The timing core: warm-up excluded, the clock read around the call only, robust statistics.

Each sample is ``perf_counter()`` immediately before and after one call of a zero-argument
function that does nothing but the inference (inputs are prepared beforehand). The
garbage collector is paused during the timed loop, as ``timeit`` does, so a collection
triggered by other code does not land inside a sample.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any, Callable

import numpy as np

MIN_RUNS = 5  # with --seconds, at least this many samples
MAX_RUNS = 100_000


def time_once(fn: Callable[[], Any]) -> float:
    """Milliseconds of one call."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def sample(
    fn: Callable[[], Any], *, warmup: int = 10, runs: int | None = 100, seconds: float | None = None
) -> np.ndarray:
    """Latency samples (ms) of ``fn`` after ``warmup`` untimed calls.

    Exactly ``runs`` samples, or as many as fit in ``seconds`` (at least MIN_RUNS) when
    ``seconds`` is given.
    """
    if runs is None and seconds is None:
        raise ValueError("give runs or seconds")
    for _ in range(max(0, warmup)):
        fn()
    n_max = MAX_RUNS if seconds is not None else int(runs)  # type: ignore[arg-type]
    out = np.empty(n_max, dtype=np.float64)
    clock = time.perf_counter
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = clock() + seconds if seconds is not None else None
        n = 0
        while n < n_max:
            t0 = clock()
            fn()
            t1 = clock()
            out[n] = t1 - t0
            n += 1
            if deadline is not None and t1 >= deadline and n >= MIN_RUNS:
                break
    finally:
        if was_enabled:
            gc.enable()
    return out[:n] * 1e3


def summarize(samples_ms: np.ndarray) -> dict[str, Any]:
    """mean, std, p50, p90, p99, min, max, n and the 0..100 percentiles (101 values)."""
    s = np.asarray(samples_ms, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no latency samples")
    q = np.percentile(s, np.arange(101))
    r = lambda v: round(float(v), 5)  # noqa: E731  (0.01 us resolution is plenty)
    return {
        "mean": r(s.mean()),
        "std": r(s.std(ddof=1)) if s.size > 1 else 0.0,
        "p50": r(q[50]),
        "p90": r(q[90]),
        "p99": r(q[99]),
        "min": r(s.min()),
        "max": r(s.max()),
        "n": int(s.size),
        "quantiles": [r(v) for v in q],
    }


def iqr(stats: dict[str, Any]) -> float:
    """Inter-quartile range (p75 - p25) from a summary."""
    q = stats["quantiles"]
    return float(q[75] - q[25])


def medians_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two runs of one cell agree when their medians differ by at most the larger std."""
    return abs(a["p50"] - b["p50"]) <= max(a["std"], b["std"])


def _proc_status_mb(field: str) -> float | None:
    """A memory field (kB) of /proc/self/status in MB; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MB (None where it cannot be read).

    Linux: VmHWM, the high-water mark of this process image. Not ``ru_maxrss``: Linux
    carries that over from the parent across fork + exec, so a cell process started by
    a large parent would report the parent's size.
    """
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource  # noqa: PLC0415  (Unix only)
    except ImportError:
        try:
            import psutil  # noqa: PLC0415  (Windows: peak working set)
        except ImportError:
            return None
        return round(psutil.Process().memory_info().peak_wset / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def current_rss_mb() -> float | None:
    """Current resident set size in MB (Linux VmRSS; None elsewhere)."""
    return _proc_status_mb("VmRSS")
