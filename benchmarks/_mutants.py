"""Damaged copies of a model file, loaded one by one in a worker process, each outcome classified.

A mutant is the model's bytes with a few bytes flipped, a range zeroed or the tail cut off.
A worker process loads each mutant with ``Localizer.load`` and predicts two fixed images;
the parent compares the answer with the undamaged file's. Outcomes:

- ``clear error``: a ``UserError`` (what the CLIs print as one line, exit 2);
- ``correct``: loads and answers exactly as the original (the mutation changed nothing used);
- ``silently different``: loads and answers differently, with no error;
- ``traceback``: any other exception (a bug, or an engine error nobody named);
- ``crash``: the worker died (a signal, e.g. a segfault in an engine);
- ``hang``: no answer within the per-mutant timeout.

One worker serves many mutants (an engine import costs seconds); a crash or hang costs a
fresh worker. ``python -m benchmarks._mutants`` is the worker's entry point.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OUTCOMES = ("clear error", "correct", "silently different", "traceback", "crash", "hang")
KINDS = ("flip", "zero", "truncate")
_ROOT = Path(__file__).resolve().parent.parent


def mutants(data: bytes, count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` damaged copies of ``data``, cycling through byte flips, zeroed ranges and
    truncations (deterministic for a seed); yields (description, bytes)."""
    rng = random.Random(seed)
    size = len(data)
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        buf = bytearray(data)
        if kind == "flip":
            spots = [rng.randrange(size) for _ in range(rng.choice((1, 1, 2, 4, 8)))]
            for pos in spots:
                buf[pos] ^= rng.randrange(1, 256)
            yield f"flip {len(spots)} byte(s) at {spots[0]}", bytes(buf)
        elif kind == "zero":
            length = min(size, int(2 ** rng.uniform(0, 12)))  # 1 B .. 4 KiB, log-uniform
            start = rng.randrange(size - length + 1)
            buf[start : start + length] = bytes(length)
            yield f"zero {length} bytes at {start}", bytes(buf)
        else:
            keep = rng.randrange(size)
            yield f"truncate to {keep} of {size} bytes", bytes(buf[:keep])


class Worker:
    """A ``python -m benchmarks._mutants`` process answering one JSON request per line."""

    def __init__(self, verify: bool, threads: int = 1):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._mutants", json.dumps([verify, threads])],
            cwd=_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env,
        )

    def ask(self, path: Path, timeout: float) -> dict[str, Any]:
        """Load and predict ``path``; {"outcome": "crash" | "hang"} when the worker fails."""
        answer: list[str] = []
        try:
            self.proc.stdin.write(str(path) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"outcome": "crash", "detail": f"worker exited {self.proc.poll()}"}
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.close()
            return {"outcome": "hang", "detail": f"no answer in {timeout:.0f} s"}
        if not answer or not answer[0]:
            code = self.proc.wait(timeout=10)
            return {"outcome": "crash", "detail": f"worker exited {code}"}
        return json.loads(answer[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b))


def _offsets(values: list[float], reference: list[float], width: int = 320) -> tuple[float, float]:
    """(largest box move in pixels of the 320-pixel-wide test images, largest score change)."""
    per_image = len(reference) // 2  # two images: 4 box values then the scores, each
    box = max(abs(values[i + k] - reference[i + k]) for i in (0, per_image) for k in range(4))
    score = max(abs(v - r) for j, (v, r) in enumerate(zip(values, reference))
                if j % per_image >= 4)
    return box * width, score


def _describe(box_px: float, score: float) -> str:
    return f"box off by up to {box_px:.1f} px, a score by up to {score:.3f}"


def difference(values: list[float], reference: list[float], width: int = 320) -> str:
    """How far a silently different answer is off: the largest box move in pixels of the
    320-pixel-wide test images, and the largest score change."""
    return _describe(*_offsets(values, reference, width))


def classify(answer: dict[str, Any], reference: list[float]) -> str:
    """The outcome of one worker answer against the undamaged file's outputs."""
    if answer.get("outcome") in ("crash", "hang"):
        return answer["outcome"]
    if "error" in answer:
        return "clear error" if answer["user_error"] else "traceback"
    return "correct" if _same(answer["values"], reference) else "silently different"


def fuzz(
    model: Path, count: int, *, verify: bool, seed: int = 0, timeout: float = 60.0,
    examples: int = 3,
) -> dict[str, Any]:
    """Load ``count`` mutants of ``model``; counts per outcome and a few example messages."""
    data = model.read_bytes()
    worker = Worker(verify)
    counts: Counter[str] = Counter()
    seen: dict[str, list[str]] = {}
    worst: tuple[float, float] | None = None  # the silently different answer whose box moved most
    with tempfile.TemporaryDirectory(prefix="edgeloc-abuse-") as tmp:
        reference = worker.ask(model, timeout)
        if "values" not in reference:
            worker.close()
            raise RuntimeError(f"the undamaged {model} does not load: {reference}")
        target = Path(tmp) / model.name
        for description, mutant in mutants(data, count, seed):
            target.write_bytes(mutant)
            answer = worker.ask(target, timeout)
            outcome = classify(answer, reference["values"])
            counts[outcome] += 1
            if outcome == "silently different":
                moved = _offsets(answer["values"], reference["values"])
                answer["error"] = _describe(*moved)
                worst = moved if worst is None or moved[0] > worst[0] else worst
            if outcome not in ("correct",) and len(seen.setdefault(outcome, [])) < examples:
                seen[outcome].append(f"{description}: {answer.get('error', '')}"[:300])
            if outcome in ("crash", "hang"):
                worker = Worker(verify)
    worker.close()
    return {"model": str(model), "verify": verify, "mutants": count,
            "counts": {o: counts.get(o, 0) for o in OUTCOMES}, "examples": seen,
            "worst": _describe(*worst) if worst else ""}


def _serve(verify: bool, threads: int) -> None:
    """Worker loop: one model path per stdin line, one JSON answer per stdout line."""
    import warnings

    import numpy as np

    from runtime import Localizer
    from runtime.errors import UserError

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    out = sys.stdout
    sys.stdout = sys.stderr  # engine chatter must not corrupt the answers
    for line in sys.stdin:
        answer: dict[str, Any]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loc = Localizer.load(line.strip(), threads=threads, verify=verify)
                values: list[float] = []
                for image in images:
                    result = loc.predict(image)
                    values += [*result.box_norm, *np.asarray(result.scores).tolist()]
            answer = {"values": values}
        except Exception as err:  # noqa: BLE001 (the parent classifies: UserError or not)
            answer = {"error": f"{type(err).__name__}: {err}"[:500],
                      "user_error": isinstance(err, UserError)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve(*json.loads(sys.argv[1]))
