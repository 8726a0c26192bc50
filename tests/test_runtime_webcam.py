"""The webcam loop, headless: files, folders, live-frame dropping, MJPEG serving, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import webcam
from runtime.errors import UserError
from runtime.localizer import Result
from runtime.overlay import BoxSmoother, HudValues, draw_result
from runtime.models import DEFAULT_MODEL
from runtime.saver import CONTAINERS, MIN_SIDE, VideoSaver, frames_held
from runtime.serve import BOUNDARY, parse_address
from runtime.sources import Capture, Frame, Source, open_frames
from tests import test_runtime_helpers as helpers
from tests.test_runtime_helpers import VIDEO_FRAMES, write_images

runtime_models, video_file = helpers.runtime_models, helpers.video_file  # session fixtures

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_video_file_every_frame_saved_and_summarized(runtime_models, video_file, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = webcam.main(
        [
            "--model",
            str(runtime_models["u8"]),
            "--source",
            str(video_file),
            "--no-display",
            "--save",
            str(out),
            "--threads",
            "1",
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == VIDEO_FRAMES and summary["failed"] == 0 and summary["dropped"] == 0
    assert summary["stopped_by"] == "end of source" and summary["fps"] > 0
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p95_ms"]
    assert summary["frame_p50_ms"] >= summary["latency_p50_ms"]
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == VIDEO_FRAMES
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 640, 3)
    # the drawn box (green) is where the model puts it: x 64..384, y 96..432
    green = (frame[:, :, 1] > 150) & (frame[:, :, 0] < 120) & (frame[:, :, 2] < 120)
    ys, xs = np.nonzero(green)
    assert abs(xs.min() - 64) < 20 and abs(xs.max() - 384) < 20 and abs(ys.max() - 432) < 20


def test_image_folder_with_a_broken_frame_counts_and_skips_it(runtime_models, tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, n=5, corrupt=(2,))
    seen: list[Result] = []
    summary = webcam.run(
        runtime_models["onnx"],
        str(folder),
        display=False,
        threads=1,
        on_frame=lambda img, r: seen.append(r),
    )
    assert summary.frames == 4 and summary.failed == 1 and len(seen) == 4
    glob_summary = webcam.run(
        runtime_models["onnx"], str(folder / "img_0[01].jpg"), display=False, threads=1
    )
    assert glob_summary.frames == 2


def test_threshold_smoothing_and_max_frames(runtime_models, video_file):
    seen: list[Result] = []
    summary = webcam.run(
        runtime_models["u8"],
        str(video_file),
        display=False,
        threshold=0.99,
        smooth=0.5,
        max_frames=5,
        threads=1,
        on_frame=lambda img, r: seen.append(r),
    )
    assert summary.frames == 5 and summary.stopped_by == "--max-frames 5"
    assert seen and not any(r.present for r in seen)  # 0.88 < 0.99: "no object"


def test_box_smoother_is_an_ema_that_resets():
    def res(box, present=True):
        return Result(box, box, "cat", 0.9, np.array([0.1, 0.9]), present, 1.0, 1.0, "x", "y")

    s = BoxSmoother(0.5)
    assert s.update(res((0, 0, 10, 10))) == (0, 0, 10, 10)
    assert s.update(res((10, 10, 20, 20))) == (5.0, 5.0, 15.0, 15.0)
    s.update(res((0, 0, 1, 1), present=False))
    assert s.update(res((10, 10, 20, 20))) == (10, 10, 20, 20)
    with pytest.raises(ValueError, match="smoothing"):
        BoxSmoother(1.5)


def test_cached_label_drawing_matches_opencv_and_clips_at_the_edges():
    def res(box, present=True):
        return Result(box, box, "cat", 0.87, np.array([0.13, 0.87]), present, 1.0, 1.0, "x", "y")

    img = draw_result(np.full((240, 320, 3), 128, np.uint8), res((40.0, 60.0, 200.0, 180.0)))
    ref = np.full((240, 320, 3), 128, np.uint8)
    for i in range(2):  # the outline: 2 px, inside the box
        cv2.rectangle(ref, (40 + i, 60 + i), (200 - i, 180 - i), (60, 220, 60), 1)
    (w, h), base = cv2.getTextSize("cat 0.87", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.rectangle(ref, (42 - 2, 54 - h - 3), (42 + w + 2, 54 + base), (0, 0, 0), -1)
    cv2.putText(ref, "cat 0.87", (42, 54), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 220, 60), 1, cv2.LINE_AA)
    np.testing.assert_array_equal(img, ref)
    for box in [(-50.0, -40.0, 30.0, 20.0), (300.0, 230.0, 400.0, 300.0), (0.0, 0.0, 320.0, 240.0)]:
        out = draw_result(np.zeros((240, 320, 3), np.uint8), res(box))  # label half off-frame
        assert out.shape == (240, 320, 3) and out.any()
    out = draw_result(np.zeros((20, 30, 3), np.uint8), res((0.0, 0.0, 1.0, 1.0), present=False))
    assert out.shape == (20, 30, 3)  # "no object" text wider than the frame: clipped
    frame = np.zeros((240, 320, 3), np.uint8)
    draw_result(frame[20:200, 10:300], res((40.0, 60.0, 100.0, 120.0)))  # a crop view: in place
    assert frame[20:200, 10:300].any() and not frame[:20].any()
    read_only = frame.copy()
    read_only.flags.writeable = False
    for bad in (read_only, frame[:, ::-1], frame[:, :, ::-1], frame[:, :, 0], frame[..., None]):
        with pytest.raises(UserError, match="writable \\(h, w, 3\\) BGR image"):  # was cv2.error
            draw_result(bad, res((40.0, 60.0, 200.0, 180.0)))


def test_hud_values_refresh_at_their_rate():
    now = [0.0]
    hud = HudValues(rate=4.0, clock=lambda: now[0])
    assert hud.update(0.0, 2.0) == (0.0, 2.0)  # the meter has no rate on the first frame
    now[0] = 0.01
    assert hud.update(30.0, 2.0) == (30.0, 2.0)  # so the first real rate shows at once
    now[0] = 0.2
    assert hud.update(25.0, 3.0) == (30.0, 2.0)  # within 0.25 s: still the shown values
    now[0] = 0.26
    assert hud.update(20.0, 4.0) == (20.0, 4.0)


class _FastCamera(Source):
    """A stand-in live source: 200 numbered frames as fast as it can."""

    live = True

    def __init__(self):
        self.i = 0

    def read(self):
        if self.i >= 200:
            return None
        self.i += 1
        time.sleep(0.001)
        return Frame(self.i - 1, np.full((4, 4, 3), self.i % 256, np.uint8))


def test_live_capture_keeps_only_the_newest_frame():
    cap = Capture(_FastCamera()).start()
    got = []
    while (frame := cap.get(timeout=5)) is not None:
        got.append(frame.index)
        time.sleep(0.02)  # a slow model
    cap.stop()
    assert got == sorted(got) and got[-1] == 199
    assert cap.dropped > 100 and cap.dropped + len(got) == 200


def test_mjpeg_server_page_and_stream(runtime_models, video_file):
    port = _free_port()
    with helpers.serving(runtime_models["u8"], video_file, f"127.0.0.1:{port}") as box:
        assert box["url"] == f"http://127.0.0.1:{port}/"
        page = urllib.request.urlopen(box["url"], timeout=5).read().decode()
        assert '<img id="stream" src="/stream.mjpg"' in page
        with urllib.request.urlopen(box["url"] + "stream.mjpg", timeout=5) as resp:
            assert resp.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            frames = [_read_part(resp) for _ in range(3)]
        for jpeg in frames:
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (480, 640, 3)
        stats = json.loads(urllib.request.urlopen(box["url"] + "stats.json", timeout=5).read())
        assert stats["frames"] > 0 and stats["label"] == "cat"
    assert not box["alive"] and box["summary"].stopped_by == "stop request"


def _read_part(resp) -> bytes:
    line = resp.readline().strip()
    while not line:  # the CRLF that ends the previous part
        line = resp.readline().strip()
    assert line == f"--{BOUNDARY}".encode()
    headers = {}
    while line := resp.readline().strip():
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return resp.read(int(headers["content-length"]))


def test_serve_address_parsing():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("[::1]:81") == ("::1", 81)
    for text in ("localhost", "127.0.0.1:\u00b2", "::1", "::1:8080"):  # "²": a digit to Python
        with pytest.raises(UserError, match="HOST:PORT"):
            parse_address(text)
    with pytest.raises(UserError, match="an IPv6 address goes in brackets"):
        parse_address("::1")


def test_bad_inputs_exit_2_with_a_message(
    runtime_models, video_file, tmp_path, capsys, monkeypatch
):
    model = str(runtime_models["u8"])
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    empty_video = tmp_path / "empty.mp4"
    empty_video.touch()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(runtime_models["u8"].read_bytes()[:5000])
    cases = [
        (["--source", "7"], "no camera at index 7; pass --source video.mp4"),
        (["--source", str(bad_video)], "cannot decode video"),
        (["--source", str(empty_video)], "is empty (0 bytes); re-copy"),  # was "convert it"
        (["--source", str(tmp_path / "none.mp4")], "not found"),
        (["--source", str(tmp_path / "*.png")], "no images match"),
        (["--threshold", "2"], "--threshold must be in [0, 1]"),
        (["--smooth", "1"], "smoothing must be in [0, 1)"),
        (["--save", str(tmp_path / "no" / "out.mp4")], "does not exist"),
        (["--serve", "nonsense"], "HOST:PORT"),
        (["--serve", "\u00fc" * 70 + ":8080"], "not a valid host name or address"),
        (["--source", "\u00b2"], "source \u00b2 not found"),
        (["--source", "9" * 20], f"no camera at index {'9' * 20} (indexes run 0..9999)"),
    ]
    for extra, message in cases:
        argv = ["--model", model, "--source", str(video_file), "--no-display", *extra]
        assert webcam.main(argv) == 2, extra
        err = capsys.readouterr().err
        assert message in err.replace("\n", "") and "Traceback" not in err, extra
    for path, message in ((tmp_path / "missing.tflite", "not found"), (truncated, "TFLite model")):
        assert webcam.main(["--model", str(path), "--source", str(video_file), "--no-display"]) == 2
        assert message in capsys.readouterr().err.replace("\n", "")
    monkeypatch.setattr("runtime._cli.DEFAULT_MODEL", tmp_path / "models" / "cat_int8.tflite")
    assert webcam.main(["--source", str(video_file), "--no-display"]) == 2
    assert "run `make models`" in capsys.readouterr().err.replace("\n", "")


def test_model_names_pick_the_shipped_models(tmp_path, monkeypatch):
    from runtime._cli import resolve_model
    from runtime.models import DEFAULT_MODEL, MODELS_DIR

    assert resolve_model(None) == resolve_model("cat") == DEFAULT_MODEL
    assert resolve_model("face") == MODELS_DIR / "face_int8.tflite" and resolve_model("face").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "face").write_bytes(b"a user's file named face")
    assert resolve_model("face") == Path("face")  # an existing path always wins over a name
    monkeypatch.setattr("runtime.models.MODELS_DIR", tmp_path / "models")
    (tmp_path / "face").unlink()
    with pytest.raises(UserError, match="face_int8.tflite is missing; run `make models`"):
        resolve_model("face")


def test_port_in_use_exits_2(runtime_models, video_file, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = webcam.main(
            [
                "--model",
                str(runtime_models["u8"]),
                "--source",
                str(video_file),
                "--no-display",
                "--serve",
                f"127.0.0.1:{port}",
            ]
        )
    assert rc == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err.replace(
        "\n", ""
    )


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_summary(runtime_models, video_file):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.webcam",
            "--model",
            str(runtime_models["u8"]),
            "--source",
            str(video_file),
            "--loop",
            "--no-display",
            "--threads",
            "1",
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-1500:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by"] == "Ctrl-C" and summary["frames"] > VIDEO_FRAMES  # it looped
    assert "edgeloc run summary" in err


def test_open_frames_kinds(video_file, tmp_path):
    images = write_images(tmp_path / "imgs", n=2)
    assert not open_frames(str(video_file)).live
    assert open_frames(str(images[0])).read().image is not None
    assert [f.index for f in iter(open_frames(str(tmp_path / "imgs")).read, None)] == [0, 1]
    with pytest.raises(ValueError, match="no camera at index 9"):
        open_frames("9")


def _exif_rotated_jpeg(path: Path, height: int = 60, width: int = 100) -> Path:
    """A JPEG stored ``height`` x ``width`` with EXIF orientation 6 (shown rotated 90 degrees)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path, "JPEG", exif=exif)
    return path


def test_an_image_file_under_any_name_goes_through_the_image_reader(runtime_models, tmp_path,
                                                                   capsys):
    """.jfif, .dat, no extension: an image by its bytes gets the pixel limit, EXIF rotation
    and truncation checks of data.images.read_image, not cv2.VideoCapture."""
    model = str(runtime_models["u8"])
    bomb = tmp_path / "bomb.dat"  # a PNG over the pixel limit, under any other name
    bomb.write_bytes(cv2.imencode(".png", np.zeros((1000, 2000, 3), np.uint8))[1].tobytes())
    noise = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", noise)[1].tobytes()  # ~10 kB: the cut is in its pixels
    cut = tmp_path / "cut.jfif"
    cut.write_bytes(jpeg[:-300])
    argv = ["--model", model, "--no-display", "--threads", "1", "--json", "--source"]
    for path, message in ((bomb, "over the 1 MP limit"), (cut, "truncated JPEG")):
        assert webcam.main([*argv, str(path), "--max-pixels", "1000000"]) == 1, path
        captured = capsys.readouterr()
        summary = json.loads(captured.out.strip().splitlines()[-1])
        assert summary["frames"] == 0 and summary["failed"] == 1, path
        assert message in captured.err.replace("\n", ""), path
    rotated = _exif_rotated_jpeg(tmp_path / "photo.jfif")
    plain = tmp_path / "frame"  # no extension at all
    plain.write_bytes(jpeg)
    for path, shape in ((rotated, (100, 60, 3)), (plain, (90, 120, 3))):
        shapes: list[tuple] = []
        summary = webcam.run(model, str(path), display=False, threads=1,
                             on_frame=lambda img, r: shapes.append(img.shape))
        assert summary.frames == 1 and summary.failed == 0 and shapes == [shape], path
    # Concatenated JPEGs start like one image but are a video: they stay one.
    mjpeg = tmp_path / "clip.mjpeg"
    mjpeg.write_bytes(jpeg * 3)
    assert webcam.run(model, str(mjpeg), display=False, threads=1).frames == 3


def test_source_paths_with_glob_characters_are_used_as_given(runtime_models, video_file,
                                                             tmp_path):
    model = runtime_models["u8"]
    folder = tmp_path / "ünï [x]"
    write_images(folder, n=2)
    write_images(tmp_path / "ünï x", n=3)  # what "[x]" would match as a glob: not this
    clip = tmp_path / "sp ace" / "clip[1].mp4"
    clip.parent.mkdir()
    clip.write_bytes(video_file.read_bytes())
    what = tmp_path / "what?.mp4"
    what.write_bytes(video_file.read_bytes())
    for source, frames in ((folder, 2), (clip, VIDEO_FRAMES), (what, VIDEO_FRAMES)):
        summary = webcam.run(model, str(source), display=False, threads=1)
        assert summary.frames == frames and summary.failed == 0, source
    # A name that does not exist is still a glob.
    assert webcam.run(model, str(tmp_path / "ünï [x]" / "img_0[1].jpg"), display=False,
                      threads=1).frames == 1


def test_save_refuses_a_name_it_cannot_write_as_a_video(runtime_models, video_file, tmp_path,
                                                        capsys):
    base = ["--model", str(runtime_models["u8"]), "--source", str(video_file), "--no-display"]
    for name in ("out.png", "out.jpg", "out"):
        t0 = time.perf_counter()
        assert webcam.main([*base, "--save", str(tmp_path / name)]) == 2, name
        assert time.perf_counter() - t0 < 5  # refused before the run, not after the video
        err = capsys.readouterr().err.replace("\n", "")
        assert f"--save {tmp_path / name}: cannot write a video as" in err, name
        assert ".mp4, .m4v, .mov, .avi, .mkv" in err, name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", sorted(CONTAINERS))
def test_every_save_container_holds_every_frame(suffix, tmp_path):
    saver = VideoSaver(tmp_path / f"out{suffix}", 30.0)
    for i in range(5):
        assert saver.write(np.full((120, 160, 3), 40 * i, np.uint8))
    assert saver.close() == 5
    cap = cv2.VideoCapture(str(tmp_path / f"out{suffix}"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 5


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mp4"])
def test_tiny_frames_make_a_video_of_the_least_size_and_say_so(suffix, tmp_path, caplog):
    # 4x4 and 5x5 frames corrupted the MJPG writer's heap (an abort): never written as such
    for side in (4, 5):
        saver = VideoSaver(tmp_path / f"s{side}{suffix}", 30.0)
        for i in range(3):
            assert saver.write(np.full((side, side, 3), 60 * i, np.uint8))
        assert saver.close() == 3
        cap = cv2.VideoCapture(str(tmp_path / f"s{side}{suffix}"))
        size = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        assert size == (16, 16)
    # a 1x1 first image no longer makes a 1x1 video without a word
    saver = VideoSaver(tmp_path / f"one{suffix}", 30.0)
    with caplog.at_level("WARNING", logger="runtime.saver"):
        for shape in ((1, 1, 3), (480, 640, 3), (480, 640, 3)):
            assert saver.write(np.full(shape, 200, np.uint8))
    assert saver.close() == 3 and MIN_SIDE == 16
    assert "the first frame is only 1x1" in caplog.text
    assert caplog.text.count("shrunk into the 16x16 video") == 1  # once, not per frame


def test_names_that_are_not_utf8_never_reach_opencv(video_file, tmp_path, capsys):
    """OpenCV segfaults on them: the video goes through an ASCII temporary name, a source
    is refused with one line."""
    out = tmp_path / "o\udcffut.avi"  # the bytes b"o\xffut.avi"
    saver = VideoSaver(out, 30.0)
    for i in range(3):
        assert saver.write(np.full((48, 64, 3), 60 * i, np.uint8))
    assert saver.close() == 3 and os.listdir(tmp_path) == [out.name]
    assert frames_held(out.rename(tmp_path / "plain.avi"), 3) == 3
    clip = tmp_path / "cl\udcffip.mp4"
    clip.write_bytes(video_file.read_bytes())
    with pytest.raises(UserError, match=r"cl\\xffip.mp4: its name is not UTF-8.*rename it"):
        open_frames(str(clip))
    argv = ["--model", str(DEFAULT_MODEL), "--no-display", "--source", str(video_file)]
    saved = tmp_path / "o\udcffut.mkv"
    assert webcam.main([*argv, "--save", str(saved), "--max-frames", "2"]) == 0
    assert saved.stat().st_size > 0
    assert webcam.main([*argv[:-1], str(clip)]) == 2
    assert "rename it" in capsys.readouterr().err


def _cut_avi(path: Path, frames: int = 30) -> Path:
    """An MJPG AVI cut in half, as an interrupted copy leaves it: its header still says
    ``frames`` frames, about half of them are there."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), 8 * i, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_video_ends_with_a_warning_and_exit_1(runtime_models, tmp_path, capsys):
    clip = _cut_avi(tmp_path / "cut.avi")
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT) == 30
    argv = ["--model", str(runtime_models["u8"]), "--no-display", "--threads", "1", "--json"]
    assert webcam.main([*argv, "--source", str(clip)]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert 0 < summary["frames"] < 30 and summary["failed"] == 0
    expected = f"ended early: {summary['frames']} of the 30 frames its header announces"
    assert expected in summary["ended_early"]
    assert "WARNING" in captured.err and expected in captured.err.replace("\n", "")


class _StallingMjpeg(threading.Thread):
    """An MJPEG-over-HTTP server that sends ``frames`` frames, then nothing (a hung camera)."""

    def __init__(self, frames: int = 5):
        super().__init__(daemon=True)
        self.frames, self.sock = frames, socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.done = threading.Event()

    def run(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\n"
                     b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
        for i in range(self.frames):
            jpg = cv2.imencode(".jpg", np.full((120, 160, 3), 40 * i, np.uint8))[1].tobytes()
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                         % len(jpg) + jpg + b"\r\n")
            time.sleep(0.05)
        self.done.wait(120)  # stall, the connection open
        conn.close()
        self.sock.close()


def test_a_stalled_stream_ends_with_a_warning_and_exit_1(runtime_models):
    server = _StallingMjpeg()
    server.start()
    # FFmpeg's own read timeout (1 s here; OpenCV's default is 30 s) ends the stalled read.
    env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rw_timeout;1000000"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.webcam", "--model", str(runtime_models["u8"]),
             "--source", server.url, "--no-display", "--threads", "1", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        server.done.set()
    assert proc.returncode == 1, proc.stderr[-1500:]
    err = " ".join(proc.stderr.split())
    assert f"stream {server.url} stopped after" in err and "(stream stalled for " in err
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 1 <= summary["frames"] <= 5 and "stream stalled for " in summary["ended_early"]


def test_sigterm_stops_a_stream_that_is_still_opening(tmp_path):
    """A stream that accepts the connection and never answers keeps OpenCV in its open for
    30 s; SIGTERM ends the run at once, with SIGTERM's exit code, not after the timeout."""
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(1)
    tarpit.settimeout(60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.webcam", "--model", str(DEFAULT_MODEL), "--no-display",
         "--source", f"http://127.0.0.1:{tarpit.getsockname()[1]}/stream.mjpg"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        conn, _ = tarpit.accept()  # the run is past its set-up, opening the stream
        time.sleep(0.5)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 143, err[-1500:]
        assert time.perf_counter() - t0 < 5 and "Traceback" not in err
        conn.close()
    finally:
        proc.kill()
        tarpit.close()


def test_empty_flags_are_refused_not_taken_as_the_current_folder(runtime_models, video_file,
                                                                 capsys):
    base = ["--model", str(runtime_models["u8"]), "--source", str(video_file), "--no-display"]
    cases = [
        (["--source", ""], "--source is empty"),
        (["--source", " "], "--source is empty"),
        (["--model", ""], "--model is empty"),
        (["--save", ""], "--save is empty"),
        (["--serve", " "], "--serve is empty"),
    ]
    for extra, message in cases:
        assert webcam.main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    with pytest.raises(UserError, match="--source is empty"):
        open_frames(" ")


def test_json_summary_to_a_full_or_closed_stdout_is_no_traceback(runtime_models, tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, n=2)
    argv = [sys.executable, "-m", "runtime.webcam", "--model", str(runtime_models["u8"]),
            "--no-display", "--threads", "1", "--json", "--source", str(folder)]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(argv, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "cannot write the JSON summary to stdout" in proc.stderr
    assert "Traceback" not in proc.stderr
    read, write = os.pipe()
    os.close(read)  # nobody reads: the print meets a closed pipe
    proc = subprocess.run(argv, cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
