"""The findings of issue 12 replayed one by one through the real CLIs, each in a subprocess.

Every check runs a command a hostile but fair user would, with a timeout, and reports
``outcome`` (ok, hang, crash, traceback) and whether the fixed behaviour held (``ok``).
Fixtures (photos, videos, broken models) are built in a temporary folder by ``Fixtures``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks import _hostile
from benchmarks._sealed import sealed_copy

ROOT = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback (most recent call last)"
_PEAK = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_RSS_KB', "
         "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
         "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__')")


@dataclass
class Run:
    """One CLI run: exit code (None: killed after the timeout), output, seconds, outcome."""

    rc: int | None
    out: str
    err: str
    seconds: float
    outcome: str  # ok | hang | crash | traceback

    @property
    def one_line(self) -> bool:
        """A user-mistake exit: code 2 and a single ``error:`` message (rich may wrap it)."""
        return self.rc == 2 and self.err.count("error:") == 1 and self.outcome == "ok"


def let_ctrl_c_through() -> None:
    """Undo an inherited "ignore SIGINT" (what a non-interactive shell's ``cmd &`` sets,
    as POSIX asks) in this process, so the CLIs it starts see Ctrl-C again: a Python
    handler is reset to the default in a child, an ignored signal stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cli(argv: list[str], timeout: float = 60, stop_after: float | None = None,
        sig: int = signal.SIGINT, peak: bool = False) -> Run:
    """``python -m argv...`` from the repository root; ``stop_after`` sends ``sig`` then."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    cmd = [sys.executable, "-c", _PEAK, *argv] if peak else [sys.executable, "-m", *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    if stop_after is not None:
        time.sleep(stop_after)
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Run(None, out, err, time.perf_counter() - t0, "hang")
    seconds = time.perf_counter() - t0
    rc = proc.returncode
    outcome = "crash" if rc < 0 else "traceback" if TRACEBACK in err else "ok"
    return Run(rc, out, err, seconds, outcome)


class Fixtures:
    """Photos, videos and broken models in ``folder``, built once."""

    def __init__(self, folder: Path, model: Path):
        self.folder, self.model = folder, model
        self.onnx = model.with_suffix(".onnx")
        rng = np.random.default_rng(0)
        self.photos = folder / "photos"
        self.photos.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(self.photos / f"p{i}.jpg"), rng.integers(0, 256, (240, 320, 3),
                                                                       dtype=np.uint8))
        self.mixed = folder / "mixed"
        self.mixed.mkdir()
        for i in range(20):
            h, w = (240, 320) if i < 10 else (480, 640)
            cv2.imwrite(str(self.mixed / f"m{i:02d}.jpg"), rng.integers(0, 256, (h, w, 3),
                                                                         dtype=np.uint8))
        self.video = self._video(folder / "clip.mp4", 12)
        self.long_avi = self._long_avi(folder / "long.avi")
        self.nan = _hostile.nan_model(folder / "nan.onnx")
        self.failing = _hostile.failing_model(folder / "failing.onnx")
        self.bad_meta = _hostile.bad_metadata_model(folder / "bad_meta.onnx")
        self.alloc = _hostile.alloc_failure_model(model, folder / "alloc.tflite")
        self.truncated = _hostile.truncated_jpeg(folder / "cut.jpg")
        self.big_png = _hostile.png_claiming(folder / "huge.png", 30000, 30000, real=True)
        self.sealed = sealed_copy(model, folder / "sealed.tflite")
        self.stripped = folder / "stripped.tflite"  # the digest's marker damaged, claim kept
        data = self.sealed.read_bytes()
        self.stripped.write_bytes(data.replace(b"edgeloc-sha256:", b"edgeloc-sha000:"))
        self.fifo = folder / "pipe.tflite"
        os.mkfifo(self.fifo)
        self.big_onnx = folder / "big.onnx"
        with self.big_onnx.open("wb") as f:  # sparse: 2.1 GB on paper, no disk used
            f.write(b"\x08\x07")
            f.truncate(2_100_000_000)
        (folder / "loop_a").symlink_to(folder / "loop_b")
        (folder / "loop_b").symlink_to(folder / "loop_a")

    @staticmethod
    def _video(path: Path, frames: int) -> Path:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
        for i in range(frames):
            writer.write(np.full((240, 320, 3), 20 * i % 256, np.uint8))
        writer.release()
        return path

    @staticmethod
    def _long_avi(path: Path) -> Path:
        """12 MJPG frames in an AVI whose headers say 20 (containers that estimate)."""
        import struct

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
        for i in range(12):
            writer.write(np.full((240, 320, 3), 20 * i, np.uint8))
        writer.release()
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, 20)  # dwTotalFrames
        struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, 20)  # dwLength
        path.write_bytes(data)
        return path


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _infer(fx: Fixtures, *args: str, **kw: Any) -> Run:
    return cli(["runtime.infer", "--model", str(fx.model), *args], **kw)


def _webcam(fx: Fixtures, *args: str, **kw: Any) -> Run:
    return cli(["runtime.webcam", "--model", str(fx.model), "--no-display", "--threads", "1",
                *args], **kw)


def _check(run: Run, ok: bool, detail: str) -> dict[str, Any]:
    return {"outcome": run.outcome, "ok": bool(ok and run.outcome == "ok"),
            "detail": detail, "seconds": round(run.seconds, 2)}


def _first_error(run: Run) -> str:
    lines = [ln for ln in run.err.splitlines() if "error:" in ln]
    return lines[0].strip()[:160] if lines else run.err.strip().splitlines()[-1][:160]


def overwrite_checks(fx: Fixtures) -> dict[str, dict[str, Any]]:
    """Finding 1: outputs that are inputs are refused, inputs untouched."""
    photo, before = fx.photos / "p0.jpg", _bytes(fx.photos / "p0.jpg")
    video_before = _bytes(fx.video)
    out: dict[str, dict[str, Any]] = {}
    run = _infer(fx, str(photo), "--out", str(photo))
    out["1 infer a.jpg --out a.jpg"] = _check(run, run.one_line and _bytes(photo) == before,
                                              _first_error(run))
    run = _infer(fx, str(fx.photos), "--draw", str(fx.photos), "--out", str(fx.folder / "r.jsonl"))
    out["1 infer photos --draw photos"] = _check(
        run, run.one_line and _bytes(photo) == before, _first_error(run))
    run = _webcam(fx, "--source", str(fx.video), "--save", str(fx.video))
    out["1 webcam --source v.mp4 --save v.mp4"] = _check(
        run, run.one_line and _bytes(fx.video) == video_before, _first_error(run))
    return out


def output_checks(fx: Fixtures) -> dict[str, dict[str, Any]]:
    """Findings 2, 4, 5, 6: every frame saved; NaN, truncated and huge images are errors."""
    out: dict[str, dict[str, Any]] = {}
    saved = fx.folder / "mixed.mp4"
    run = _webcam(fx, "--source", str(fx.mixed), "--save", str(saved), "--json")
    summary = json.loads(run.out.strip().splitlines()[-1]) if run.rc == 0 else {}
    cap = cv2.VideoCapture(str(saved))
    held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    out["2 --save 10 frames 320x240 + 10 at 640x480"] = _check(
        run, summary.get("frames") == 20 and summary.get("written") == 20 and held == 20,
        f"summary frames {summary.get('frames')}, written {summary.get('written')}; "
        f"the video holds {held}")
    results = fx.folder / "nan.jsonl"
    run = cli(["runtime.infer", "--model", str(fx.nan), str(fx.photos), "--out", str(results)])
    lines = _strict_json_lines(results)
    out["4 NaN model"] = _check(
        run, run.rc == 1 and lines is not None and all("non-finite" in r.get("error", "")
                                                       for r in lines),
        f"exit {run.rc}, {len(lines or [])} strict-JSON error lines")
    run = _infer(fx, str(fx.truncated))
    line = json.loads(run.out) if run.out.strip() else {}
    out["5 truncated JPEG"] = _check(run, run.rc == 1 and "truncated JPEG" in line.get("error", ""),
                                     line.get("error", "")[:120])
    run = _infer(fx, str(fx.big_png), peak=True)
    peak = next((int(ln.split()[1]) for ln in run.err.splitlines()
                 if ln.startswith("PEAK_RSS_KB")), 0) / 1024
    line = json.loads(run.out) if run.out.strip() else {}
    out["6 PNG declaring 30000x30000 (0.9 MB file)"] = _check(
        run, run.rc == 1 and "--max-pixels" in line.get("error", "") and peak < 400,
        f"refused from the header; peak RSS {peak:.0f} MB")
    return out


def _strict_json_lines(path: Path) -> list[dict] | None:
    def no_constant(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        return [json.loads(ln, parse_constant=no_constant) for ln in path.read_text().splitlines()]
    except (OSError, ValueError):
        return None


def bound_checks(fx: Fixtures) -> dict[str, dict[str, Any]]:
    """Finding 7: absurd settings and special files."""
    out: dict[str, dict[str, Any]] = {}
    photo = str(fx.photos / "p0.jpg")
    for model in (fx.model, fx.onnx):
        run = cli(["runtime.infer", "--model", str(model), photo, "--threads", "100000"])
        out[f"7 --threads 100000 ({model.suffix[1:]})"] = _check(
            run, run.rc == 2 and "--threads" in run.err, run.err.strip().splitlines()[-1][:120])
    run = _infer(fx, photo, "--model", str(fx.fifo), timeout=20)
    out["7 FIFO as --model"] = _check(run, run.one_line and run.seconds < 10, _first_error(run))
    run = _webcam(fx, "--source", str(fx.fifo), timeout=20)
    out["7 FIFO as --source"] = _check(run, run.one_line and run.seconds < 10, _first_error(run))
    run = _infer(fx, photo, "--model", "/dev/zero", timeout=20)
    out["7 /dev/zero as --model"] = _check(run, run.one_line and run.seconds < 10,
                                           _first_error(run))
    run = _infer(fx, photo, "--model", str(fx.big_onnx), timeout=30)
    out["7 2.1 GB ONNX file"] = _check(run, run.one_line and "GiB limit" in run.err,
                                       _first_error(run))
    return out


def error_checks(fx: Fixtures) -> dict[str, dict[str, Any]]:
    """Finding 8: user mistakes are one line naming the file; Ctrl-C keeps the summary."""
    photo = str(fx.photos / "p0.jpg")
    cases: dict[str, tuple[list[str], str]] = {
        "8 tensor allocation fails": (["--model", str(fx.alloc), photo], "alloc.tflite"),
        "8 --out DIR": ([photo, "--out", str(fx.photos)], "is a folder"),
        "8 --draw FILE": ([photo, "--draw", photo], "is a file"),
        "8 --out /proc/version": ([photo, "--out", "/proc/version"], "/proc/version"),
        "8 ONNX metadata not UTF-8": (["--model", str(fx.bad_meta), photo], "bad_meta.onnx"),
        "8 symlink loop as input": ([str(fx.folder / "loop_a")], "symbolic links"),
        "3 sealed model, digest destroyed": (["--model", str(fx.stripped), photo],
                                             "digest is missing"),
    }
    if os.access("/proc/sys/vm/compact_memory", os.F_OK):  # write-only, even for root
        cases["8 unreadable model (EACCES)"] = (
            ["--model", "/proc/sys/vm/compact_memory", photo], "Permission denied")
    out: dict[str, dict[str, Any]] = {}
    for name, (args, expect) in cases.items():
        run = _infer(fx, *args)
        out[name] = _check(run, run.one_line and expect in run.err.replace("\n", ""),
                           _first_error(run))
    run = cli(["runtime.infer", "--model", str(fx.stripped), photo, "--no-verify"])
    out["3 ... loads with --no-verify"] = _check(run, run.rc == 0 and '"box"' in run.out,
                                                 f"exit {run.rc}")
    run = cli(["runtime.infer", "--model", str(fx.failing), photo])
    out["8 model fails at run time"] = _check(
        run, run.rc == 1 and "model failed" in run.err and "unreadable: " not in run.err,
        "reported as 'model failed', not 'unreadable'")
    many = fx.folder / "many"
    many.mkdir()
    big = fx.folder / "big.jpg"  # ~15 ms to decode: 4000 of them outlast the 4 s before Ctrl-C
    cv2.imwrite(str(big), np.random.default_rng(2).integers(0, 256, (1200, 1600, 3), np.uint8))
    for i in range(4000):
        os.link(big, many / f"{i:04d}.jpg")  # one file on disk
    run = _infer(fx, str(many), "--out", str(fx.folder / "many.jsonl"), stop_after=4.0)
    out["8 Ctrl-C in infer"] = _check(
        run, run.rc == 130 and "Ctrl-C" in run.err and "edgeloc infer" in run.err,
        f"exit {run.rc}, summary printed: {'edgeloc infer' in run.err}")
    return out


def small_checks(fx: Fixtures) -> dict[str, dict[str, Any]]:
    """Finding 10, the runtime's part: --max-frames, end-of-file retries, SIGTERM."""
    out: dict[str, dict[str, Any]] = {}
    run = _webcam(fx, "--source", str(fx.video), "--max-frames", "-3")
    out["10 --max-frames -3"] = _check(run, run.rc == 2 and "--max-frames" in run.err,
                                       run.err.strip().splitlines()[-1][:120])
    run = _webcam(fx, "--source", str(fx.long_avi), "--json")
    summary = json.loads(run.out.strip().splitlines()[-1]) if run.rc == 0 else {}
    out["10 end-of-file read retries"] = _check(
        run, summary.get("frames") == 12 and summary.get("failed") == 0,
        f"12 frames, header says 20: frames {summary.get('frames')}, failed "
        f"{summary.get('failed')}")
    run = _webcam(fx, "--source", str(fx.video), "--loop", "--json", stop_after=4.0,
                  sig=signal.SIGTERM)
    summary = json.loads(run.out.strip().splitlines()[-1]) if run.out.strip() else {}
    out["10 SIGTERM summary"] = _check(run, summary.get("stopped_by") == "SIGTERM",
                                       f"stopped by {summary.get('stopped_by')!r}")
    return out


def server_checks(header_timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Finding 9 and the IPv6 item: slowloris, idle sockets, the viewer cap, [::1]."""
    from runtime.serve import MjpegServer

    out: dict[str, dict[str, Any]] = {}
    server = MjpegServer("127.0.0.1", 0, max_viewers=2, header_timeout=header_timeout).start()
    stop = _publish(server)
    try:
        t0 = time.perf_counter()
        closed = _slowloris(server.port, limit=header_timeout + 10)
        seconds = time.perf_counter() - t0
        out["9 slowloris (a header line every 0.5 s)"] = _ok(
            closed and seconds < header_timeout + 2, f"closed after {seconds:.1f} s")
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", server.port)) as idle:
            idle.settimeout(header_timeout + 10)
            got = idle.recv(1)
        seconds = time.perf_counter() - t0
        out["9 idle connection"] = _ok(got == b"" and seconds < header_timeout + 2,
                                       f"closed after {seconds:.1f} s")
        url = f"http://127.0.0.1:{server.port}/stream.mjpg"
        viewers = [urllib.request.urlopen(url, timeout=10) for _ in range(2)]
        for v in viewers:
            v.readline()
        try:
            urllib.request.urlopen(url, timeout=10)
            code = 200
        except urllib.error.HTTPError as err:
            code = err.code
        for v in viewers:
            v.close()
        out["9 third viewer with --max-viewers 2"] = _ok(code == 503, f"HTTP {code}")
    finally:
        stop()
        server.stop()
    out["10 --serve [::1]:PORT"] = _ipv6()
    return out


def _ok(ok: bool, detail: str) -> dict[str, Any]:
    return {"outcome": "ok", "ok": ok, "detail": detail, "seconds": None}


def _publish(server: Any) -> Callable[[], None]:
    done = threading.Event()
    frame = np.zeros((48, 64, 3), np.uint8)

    def loop() -> None:
        while not done.is_set():
            server.publish(frame, {"frames": 1})
            time.sleep(0.05)

    threading.Thread(target=loop, daemon=True).start()
    return done.set


def _slowloris(port: int, limit: float) -> bool:
    """Send header lines slowly; True when the server closes the socket within ``limit``."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(1.0)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                if sock.recv(1) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:  # reset: closed
                return True
            time.sleep(0.5)
    return False


def _ipv6() -> dict[str, Any]:
    from runtime.serve import MjpegServer, parse_address

    if not socket.has_ipv6:
        return {"outcome": "ok", "ok": True, "detail": "skipped: no IPv6", "seconds": None}
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return {"outcome": "ok", "ok": True, "detail": "skipped: no ::1", "seconds": None}
    server = MjpegServer(*parse_address("[::1]:0")).start()
    try:
        page = urllib.request.urlopen(server.url, timeout=10).read()
        return _ok(b"/stream.mjpg" in page, f"page served at {server.url}")
    finally:
        server.stop()


CHECKS = (overwrite_checks, output_checks, bound_checks, error_checks, small_checks)

__all__ = ["CHECKS", "Fixtures", "Run", "cli", "server_checks"]
