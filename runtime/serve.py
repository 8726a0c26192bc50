"""A tiny MJPEG server: one HTML page and a live multipart JPEG stream, standard library only.

For a headless Raspberry Pi watched from a laptop browser. It binds to 127.0.0.1 unless
told otherwise; binding to another address exposes the camera to that network.

Bounded like a small public server: a client has ``HEADER_TIMEOUT`` seconds to send its
request headers (slowloris), a stalled socket times out after ``IO_TIMEOUT``, at most
``max_viewers`` streams run at once (more get 503) and at most ``max_viewers + 16``
connections are open (more are closed unanswered): one thread each, so a bounded count.
"""

from __future__ import annotations

import errno
import html
import json
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from runtime.errors import UserError

log = logging.getLogger(__name__)

BOUNDARY = "edgeloc-frame"
DEFAULT_MAX_VIEWERS = 4  # a Pi encodes one JPEG per frame for all; each viewer costs a send
HEADER_TIMEOUT = 5.0  # seconds to send the request line and headers, in total
IO_TIMEOUT = 10.0  # one socket read or write (a viewer that stopped reading)
_SPARE_CONNECTIONS = 16  # page, stats and not-yet-parsed connections beside the streams
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{background:#111;color:#ddd;font:14px sans-serif;margin:1em}}
img{{max-width:100%;border:1px solid #333}}</style></head>
<body><h3>{title}</h3>
<img id="stream" src="/stream.mjpg" alt="live stream">
<pre id="stats">waiting for frames...</pre>
<script>
async function poll() {{
  try {{
    const r = await fetch('/stats.json', {{cache: 'no-store'}});
    const s = await r.json();
    const img = document.getElementById('stream');
    s.shown_width = img.naturalWidth; s.shown_height = img.naturalHeight;
    document.getElementById('stats').textContent = JSON.stringify(s, null, 1);
  }} catch (e) {{}}
}}
setInterval(poll, 500);
</script></body></html>
"""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to 127.0.0.1.

    An IPv6 host goes in brackets (``[::1]:8080``): in a bare ``::1`` the last group would
    be taken for the port.
    """
    host, _, port = text.rpartition(":")
    wanted = f"--serve wants HOST:PORT such as 127.0.0.1:8080 or [::1]:8080, got {text!r}"
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:  # not "²"
        raise UserError(wanted)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise UserError(f"{wanted}; an IPv6 address goes in brackets")
    return host.strip("[]") or "127.0.0.1", int(port)


class MjpegServer:
    """Serves the latest published frame as an MJPEG stream at /stream.mjpg, a page at /."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        title: str = "edgeloc",
        quality: int = 80,
        max_viewers: int = DEFAULT_MAX_VIEWERS,
        header_timeout: float = HEADER_TIMEOUT,
    ):
        self.host, self.port, self.title, self.quality = host, port, title, quality
        self.max_viewers, self.header_timeout = max_viewers, header_timeout
        self.connections = 0  # open connections, streams or not
        self.refused = 0  # connections closed for the caps
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._raw: np.ndarray | None = None  # the newest published frame, maybe not encoded
        self._raw_seq = 0  # published frames
        self._jpeg_seq = 0  # which of them self._jpeg shows: the stream's frame number
        self._stats: dict[str, Any] = {}
        self._closed = False
        self.viewers = 0
        self.frames_sent = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> MjpegServer:
        """Bind and serve in a background thread; a busy port raises UserError."""
        server = self

        class Handler(_Handler):
            owner = server

        class Server(_Server):
            owner = server
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        try:
            self._httpd = Server((self.host, self.port), Handler)
        except (UnicodeError, ValueError, TypeError):  # a host name the resolver refuses
            raise UserError(
                f"cannot serve on {self.host!r}: not a valid host name or address; pass "
                "--serve 127.0.0.1:8080 or a local address"
            ) from None
        except OSError as err:
            shown = f"[{self.host}]" if ":" in self.host else self.host
            if err.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {self.port} on {self.host} is already in use; pick another "
                    f"with --serve {shown}:{self.port + 1}"
                ) from None
            raise UserError(
                f"cannot serve on {self.host}:{self.port} ({err.strerror}); "
                "pass --serve 127.0.0.1:8080 or a local address"
            ) from None
        self.port = self._httpd.server_address[1]  # port 0 picks a free one
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("serving on %s: anyone on that network can watch this stream", self.url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            name="edgeloc-mjpeg",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )
        self._thread.start()
        return self

    def wants_frames(self) -> bool:
        """Whether encoding each frame as it comes is worth it (a stream viewer is
        connected); without one, ``/frame.jpg`` encodes the newest frame when asked."""
        return self.viewers > 0

    def publish(self, bgr: np.ndarray, stats: dict[str, Any] | None = None) -> None:
        """Offer a new frame and the current stats. The frame is kept (not copied: do not
        change it afterwards) and encoded now only when a stream viewer watches."""
        if stats is not None:
            self._stats = stats
        with self._cond:
            self._raw, self._raw_seq = bgr, self._raw_seq + 1
            seq = self._raw_seq
        if self.wants_frames():
            self._encode(bgr, seq)

    def _encode(self, bgr: np.ndarray, seq: int) -> bytes | None:
        """Encode published frame number ``seq``; it becomes the stream's frame if newest."""
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        jpeg = buf.tobytes()
        with self._cond:
            if seq > self._jpeg_seq:  # a snapshot request may have encoded a newer one
                self._jpeg, self._jpeg_seq = jpeg, seq
                self._cond.notify_all()
        return jpeg

    def next_frame(self, seen: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """Block until a frame newer than ``seen`` exists: (seq, jpeg); jpeg None when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._jpeg_seq > seen or self._closed, timeout)
            if self._closed:
                return seen, None
            return self._jpeg_seq, self._jpeg if self._jpeg_seq > seen else b""

    def _count_viewer(self, delta: int) -> bool:
        """Add (+1) or remove (-1) a stream viewer; False when +1 would pass the cap."""
        with self._cond:
            if delta > 0 and self.viewers >= self.max_viewers:
                self.refused += 1
                return False
            self.viewers += delta
            return True

    def _count_connection(self, delta: int) -> bool:
        """Add or remove an open connection; False when +1 would pass the cap."""
        with self._cond:
            if delta > 0 and self.connections >= self.max_viewers + _SPARE_CONNECTIONS:
                self.refused += 1
                return False
            self.connections += delta
            return True

    def page(self) -> bytes:
        return _PAGE.format(title=html.escape(self.title)).encode()

    def stats(self) -> bytes:
        return json.dumps({**self._stats, "viewers": self.viewers}).encode()

    def latest(self) -> bytes | None:
        """The newest published frame as JPEG (encoded here when no viewer made it already:
        a snapshot is never older than the last frame); None before the first frame."""
        with self._cond:
            raw, seq, jpeg = self._raw, self._raw_seq, self._jpeg
            fresh = seq == self._jpeg_seq
        if raw is None or fresh:
            return jpeg
        return self._encode(raw, seq) or jpeg

    def stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


class _Server(ThreadingHTTPServer):
    """Closes connections over the cap before a thread is started for them."""

    owner: MjpegServer
    daemon_threads = True

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.owner._count_connection(+1)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: the handler will never uncount it
            self.owner._count_connection(-1)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("mjpeg client %s dropped: %s", client_address, sys.exc_info()[1])  # no traceback

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._count_connection(-1)


class _Handler(BaseHTTPRequestHandler):
    owner: MjpegServer
    protocol_version = "HTTP/1.0"
    timeout = IO_TIMEOUT  # per socket operation, set by StreamRequestHandler.setup

    def setup(self) -> None:
        super().setup()
        # A total deadline for the request line and headers: the per-read timeout alone
        # lets a client trickle one byte every few seconds for hours (slowloris).
        self._deadline = threading.Timer(self.owner.header_timeout, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass

    def parse_request(self) -> bool:
        ok = super().parse_request()  # reads the headers
        self._deadline.cancel()
        return ok

    def finish(self) -> None:
        self._deadline.cancel()
        try:
            super().finish()
        except OSError:  # the peer is gone or the deadline shut the socket
            pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", self.owner.page())
        elif path == "/stats.json":
            self._send(200, "application/json", self.owner.stats())
        elif path == "/frame.jpg":
            jpeg = self.owner.latest()
            self._send(200, "image/jpeg", jpeg) if jpeg else self._send(
                503, "text/plain", b"no frame yet"
            )
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        owner = self.owner
        if not owner._count_viewer(+1):
            body = (f"{owner.max_viewers} viewers are already watching; close one or restart "
                    "with a larger --max-viewers\n").encode()
            self._send(503, "text/plain", body)
            return
        seen = 0
        owner.latest()  # the first part is the newest frame, not one a past viewer left
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            while True:
                seen, jpeg = owner.next_frame(seen)
                if jpeg is None:
                    break
                if not jpeg:
                    continue  # timed out without a new frame: wait again
                head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n")
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                owner.frames_sent += 1
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer went away
        finally:
            owner._count_viewer(-1)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("mjpeg %s: " + fmt, self.address_string(), *args)


if __name__ == "__main__":  # the server runs inside the webcam CLI; say so, do not exit 0 silently
    print("error: python -m runtime.serve is the library behind --serve; run python -m "
          "runtime.webcam --source SOURCE --serve 127.0.0.1:8080", file=sys.stderr)
    sys.exit(2)
