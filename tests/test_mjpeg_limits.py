"""Issue 12: the MJPEG server's header deadline, viewer and connection caps, IPv6 binding."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from runtime.serve import MjpegServer, parse_address


@contextmanager
def publishing(server: MjpegServer) -> Iterator[MjpegServer]:
    """The started server with a frame published every 20 ms until the block ends."""
    done = threading.Event()

    def loop() -> None:
        frame = np.zeros((24, 32, 3), np.uint8)
        while not done.is_set():
            server.publish(frame, {"frames": 1})
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    server.start()
    thread.start()
    try:
        yield server
    finally:
        done.set()
        thread.join(2)
        server.stop()


def _closed_after(sock: socket.socket, trickle: bytes | None, limit: float) -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` every 0.2 s meanwhile)."""
    sock.settimeout(0.2)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(1024) == b"":
                return time.perf_counter() - t0
        except TimeoutError:
            continue
        except OSError:  # reset by the server: closed too
            return time.perf_counter() - t0
    return float("inf")


def test_slow_and_idle_clients_are_closed_at_the_header_deadline():
    with publishing(MjpegServer("127.0.0.1", 0, header_timeout=0.8)) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.sendall(b"GET /stream.mjpg HTTP/1.1\r\n")
            seconds = _closed_after(slow, b"X-Slow: 1\r\n", limit=10)  # slowloris
        assert 0.6 < seconds < 3
        with socket.create_connection(("127.0.0.1", server.port)) as idle:
            assert 0.6 < _closed_after(idle, None, limit=10) < 3
        # a prompt client is not cut by the deadline: its stream outlives it
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=5) as resp:
            time.sleep(1.2)
            assert resp.readline().strip() == b"--edgeloc-frame"
        assert server.connections == 0 or _settles(lambda: server.connections == 0)


def _settles(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_viewer_cap_answers_503_and_frees_the_slot():
    with publishing(MjpegServer("127.0.0.1", 0, max_viewers=2)) as server:
        url = server.url + "stream.mjpg"
        first, second = (urllib.request.urlopen(url, timeout=5) for _ in range(2))
        for resp in (first, second):
            assert resp.readline().strip() == b"--edgeloc-frame"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503
        assert b"2 viewers are already watching" in refused.value.read()
        assert urllib.request.urlopen(server.url, timeout=5).status == 200  # the page still works
        first.close()
        assert _settles(lambda: server.viewers == 1)
        with urllib.request.urlopen(url, timeout=5) as third:
            assert third.readline().strip() == b"--edgeloc-frame"
        second.close()


def test_connections_over_the_cap_are_closed_unanswered():
    with publishing(MjpegServer("127.0.0.1", 0, max_viewers=1, header_timeout=5)) as server:
        cap = 1 + 16  # max_viewers + the spare connections
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(cap)]
        try:
            assert _settles(lambda: server.connections == cap)
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                assert _closed_after(extra, None, limit=3) < 1  # closed at once, not at 5 s
            assert server.refused >= 1
        finally:
            for sock in held:
                sock.close()
        assert _settles(lambda: server.connections == 0, seconds=8)


def test_the_snapshot_is_the_newest_frame_with_no_stream_viewer():
    """/frame.jpg is encoded on request when nobody watches the stream (it used to keep
    the first frame forever); with a viewer it is the frame the stream sends."""
    server = MjpegServer("127.0.0.1", 0).start()

    def snapshot() -> float:
        jpeg = urllib.request.urlopen(server.url + "frame.jpg", timeout=5).read()
        return float(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).mean())

    try:
        with pytest.raises(urllib.error.HTTPError) as none_yet:
            snapshot()
        assert none_yet.value.code == 503
        for value in (10, 200, 90):
            server.publish(np.full((24, 32, 3), value, np.uint8), {"frames": 1})
            assert abs(snapshot() - value) < 3, value
        assert server.viewers == 0
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=5) as stream:
            assert stream.readline().strip() == b"--edgeloc-frame"  # the newest frame at once
            assert _settles(lambda: server.viewers == 1)
            server.publish(np.full((24, 32, 3), 150, np.uint8))
            assert abs(snapshot() - 150) < 3
    finally:
        server.stop()


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_address_binds_and_serves():
    host, port = parse_address("[::1]:0")
    with publishing(MjpegServer(host, port)) as server:
        assert server.url.startswith("http://[::1]:")
        page = urllib.request.urlopen(server.url, timeout=5).read()
        assert b'src="/stream.mjpg"' in page


def test_python_m_runtime_serve_points_to_webcam_serve():
    # It exited 0 without a word: a user who guessed this CLI thought the server had run.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "runtime.serve"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "runtime.webcam" in done.stderr and "--serve" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
