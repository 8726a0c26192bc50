"""Issue 12: outputs never replace inputs, are atomic, and --save keeps every frame."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import infer, webcam
from runtime.errors import UserError
from runtime.atomic import TMP_MARK, atomic_output, refuse_overwrite, remove_leftovers
from runtime.models import DEFAULT_MODEL
from runtime.saver import VideoSaver, frames_held, letterbox
from tests import test_runtime_helpers as helpers
from tests.test_runtime_helpers import write_images

runtime_models, video_file = helpers.runtime_models, helpers.video_file  # session fixtures
ROOT = Path(__file__).resolve().parent.parent


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_infer_never_writes_over_its_inputs(runtime_models, tmp_path, capsys):
    photos = tmp_path / "photos"
    images = write_images(photos, n=3)
    model = runtime_models["u8"]
    (tmp_path / "link.jpg").symlink_to(images[0])
    os.link(images[1], tmp_path / "hard.jpg")
    before = _snapshot(photos)
    cases = [
        ([str(images[0]), "--out", str(images[0])], f"--out would overwrite the input {images[0]}"),
        ([str(images[0]), "--out", str(tmp_path / "link.jpg")], "would overwrite the input"),
        ([str(photos), "--out", str(tmp_path / "hard.jpg")], "would overwrite the input"),
        ([str(photos), "--draw", str(photos)], f"--draw {photos} would overwrite the input"),
        ([str(images[0]), "--out", str(model)], f"would overwrite the input {model}"),
        ([str(images[0]), "--out", str(photos)], "is a folder; pass a file name"),
        ([str(images[0]), "--draw", str(images[1])], "is a file, not a folder"),
        ([str(images[0]), "--out", "/proc/version"], "cannot write --out /proc/version"),
    ]
    for argv, message in cases:
        assert infer.main(["--model", str(model), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err.replace("\n", "") and "Traceback" not in err, argv
    assert _snapshot(photos) == before and not list(photos.glob(".*"))


def test_infer_never_writes_its_results_over_a_drawing_or_through_stdout_into_an_input(
        tmp_path, capsys, monkeypatch):
    image = write_images(tmp_path / "photos", n=1)[0]
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    model = str(DEFAULT_MODEL)
    # --out where --draw puts the image's drawing: one would silently replace the other
    assert infer.main(["--model", model, str(image), "--out", str(drawn / image.name),
                       "--draw", str(drawn)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"--out {drawn / image.name} is where --draw writes the drawing of {image}" in err
    assert list(drawn.iterdir()) == []
    # `infer a.jpg >> a.jpg`: stdout is the input, opened by the shell
    before = image.read_bytes()
    with image.open("a") as appended:
        monkeypatch.setattr(sys, "stdout", appended)
        assert infer.main(["--model", model, str(image)]) == 2
    assert image.read_bytes() == before
    assert f"--out - (stdout) would overwrite the input {image}" in \
        capsys.readouterr().err.replace("\n", "")
    # `infer a.jpg --draw drawn > drawn/a.jpg`
    with (drawn / image.name).open("w") as redirected:
        monkeypatch.setattr(sys, "stdout", redirected)
        assert infer.main(["--model", model, str(image), "--draw", str(drawn)]) == 2
    assert f"stdout goes to {drawn / image.name}, where --draw writes the drawing" in \
        capsys.readouterr().err.replace("\n", "")
    assert (drawn / image.name).read_bytes() == b""


def test_infer_replaces_other_files_atomically(runtime_models, tmp_path, capsys):
    images = write_images(tmp_path / "photos", n=2)
    out, drawn = tmp_path / "r.jsonl", tmp_path / "drawn"
    out.write_text("old results\n")
    drawn.mkdir()
    (drawn / "img_00.jpg").write_bytes(b"an old drawing")
    argv = ["--model", str(runtime_models["u8"]), *map(str, images), "--out", str(out)]
    assert infer.main([*argv, "--draw", str(drawn)]) == 0
    assert [json.loads(x)["image"] for x in out.read_text().splitlines()] == list(map(str, images))
    assert cv2.imread(str(drawn / "img_00.jpg")).shape == cv2.imread(str(images[0])).shape
    # a run that fails (a damaged model) leaves the old results and no temporary file
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(runtime_models["u8"].read_bytes()[:4000])
    kept = out.read_text()
    assert infer.main([*argv[2:], "--model", str(bad)]) == 2
    assert out.read_text() == kept and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.tflite", "drawn", "photos", "r.jsonl"]
    capsys.readouterr()


def test_refuse_overwrite_and_atomic_output_helpers(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("input")
    refuse_overwrite([b, tmp_path / "missing"], [a, tmp_path / "gone"], "--out")  # fine
    with pytest.raises(UserError, match=f"--out would overwrite the input {a}"):
        refuse_overwrite([tmp_path / "." / "a.txt"], [a], "--out")
    with pytest.raises(RuntimeError), atomic_output(b, "--out") as fh:
        fh.write("half")
        raise RuntimeError("crash mid-write")
    assert not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic_output("/dev/null", "--out") as fh:  # a device is written, never replaced
        fh.write("x")
    assert Path("/dev/null").is_char_device()


def test_a_rewritten_file_keeps_its_permissions(tmp_path):
    private = tmp_path / "private.jsonl"
    private.write_text("old")
    private.chmod(0o600)
    with atomic_output(private, "--out") as fh:
        fh.write("new")
    assert private.read_text() == "new" and private.stat().st_mode & 0o777 == 0o600
    video = tmp_path / "out.avi"
    video.write_bytes(b"an old video")
    video.chmod(0o640)
    saver = VideoSaver(video, 30.0)
    assert saver.write(np.zeros((48, 64, 3), np.uint8))
    assert saver.close() == 1 and video.stat().st_mode & 0o777 == 0o640


def test_a_fifo_output_without_a_reader_fails_instead_of_hanging(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("runtime.atomic._FIFO_WAIT_S", 0.2)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=f"--out {fifo} is a FIFO that nobody reads"):
        with atomic_output(fifo, "--out") as fh:
            fh.write("never")
    image = str(write_images(tmp_path / "a", n=1)[0])
    assert infer.main(["--model", str(DEFAULT_MODEL), image, "--out", str(fifo)]) == 2
    assert time.perf_counter() - t0 < 10
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()  # a reader that comes a moment later is waited for
    with atomic_output(fifo, "--out") as fh:
        fh.write("x" * 100_000)  # more than a pipe holds: blocking writes, as before
    reader.join(5)
    assert got == ["x" * 100_000] and fifo.is_fifo()
    assert "is a FIFO that nobody reads" in capsys.readouterr().err.replace("\n", "")


@pytest.mark.slow
def test_ctrl_c_in_infer_prints_the_summary_and_keeps_the_results(runtime_models, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    # 640x480: a few ms each, so the run outlasts the wait for its first flush on a busy machine
    one = write_images(tmp_path / "one", n=1, size=(480, 640))[0]
    for i in range(3000):
        os.link(one, folder / f"{i:04d}.jpg")  # one file on disk
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.infer", "--model", str(runtime_models["u8"]),
         str(folder), "--out", str(out), "--threads", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    def written() -> int:  # bytes the run has flushed to its temporary file so far
        return sum(p.stat().st_size for p in tmp_path.glob(f".*{TMP_MARK}.r.jsonl"))

    while not written():  # the first ~8 KB flush: a few dozen of the 3000 images are done
        assert proc.poll() is None, "the run ended before it was interrupted"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "edgeloc infer" in err and "Ctrl-C" in err
    lines = out.read_text().splitlines()
    assert 0 < len(lines) < 3000 and f"{len(lines)} of 3000" in err
    assert all(json.loads(line)["label"] == "cat" for line in lines)


def test_webcam_save_never_replaces_the_source_or_model(runtime_models, video_file, tmp_path,
                                                         capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video_file.read_bytes())
    photos = tmp_path / "photos"
    images = write_images(photos, n=2)
    model = runtime_models["u8"]
    os.link(clip, tmp_path / "same.mkv")  # the clip under a video name of another kind
    overwrite, not_video = "--save would overwrite the input", "cannot write a video as"
    for source, save, message in ((clip, clip, overwrite), (clip, tmp_path / "same.mkv", overwrite),
                                  (photos, images[1], not_video), (images[0], images[0], not_video),
                                  (clip, model, not_video)):
        before = (Path(save).read_bytes(), sorted(os.listdir(tmp_path)))
        argv = ["--model", str(model), "--source", str(source), "--save", str(save),
                "--no-display"]
        assert webcam.main(argv) == 2
        assert message in capsys.readouterr().err.replace("\n", ""), save
        assert (Path(save).read_bytes(), sorted(os.listdir(tmp_path))) == before


def test_save_keeps_every_frame_of_mixed_sizes(runtime_models, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # 4 frames 320x240, then 4 at 640x480
        h, w = (240, 320) if i < 4 else (480, 640)
        cv2.imwrite(str(folder / f"f{i}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "out.avi"
    argv = ["--model", str(runtime_models["u8"]), "--source", str(folder), "--save", str(out),
            "--no-display", "--json", "--threads", "1"]
    assert webcam.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == summary["written"] == 8 and summary["failed"] == 0
    cap = cv2.VideoCapture(str(out))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    assert len(frames) == 8 and {f.shape for f in frames} == {(240, 320, 3)}
    assert not list(tmp_path.glob(".*"))  # the temporary file was moved, not left


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc: nobody writes there")
def test_save_through_a_symlink_into_an_unwritable_folder_fails_before_the_run(
        video_file, tmp_path, capsys):
    link = tmp_path / "link.avi"
    link.symlink_to("/proc/edgeloc.avi")  # /proc takes no new file, even from root
    frames: list = []
    with pytest.raises(UserError, match="cannot create a file in folder /proc"):
        webcam.run(DEFAULT_MODEL, str(video_file), save=link, display=False, threads=1,
                   on_frame=lambda img, r: frames.append(1))
    assert frames == [] and sorted(os.listdir(tmp_path)) == ["link.avi"]
    argv = ["--model", str(DEFAULT_MODEL), "--source", str(video_file), "--no-display"]
    assert webcam.main([*argv, "--save", str(link)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_video_that_cannot_be_committed_is_kept_where_no_cleanup_removes_it(tmp_path,
                                                                              monkeypatch):
    saver = VideoSaver(tmp_path / "out.avi", 30.0)
    for i in range(3):
        assert saver.write(np.full((48, 64, 3), 60 * i, np.uint8))

    def refused(temp: Path, path: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("runtime.saver.commit", refused)
    with pytest.raises(UserError, match="the video is kept as .*out.unsaved-0.avi"):
        saver.close()
    kept = tmp_path / "out.unsaved-0.avi"
    assert sorted(os.listdir(tmp_path)) == [kept.name]
    assert remove_leftovers(tmp_path) == 0 and kept.exists()
    assert frames_held(kept, 3) == 3


def test_save_counts_the_frames_a_full_disk_cut_off(video_file, tmp_path, capsys, monkeypatch):
    """A full disk: the writer patches its header with every frame it was handed, but the
    last half of the file never reached the disk. The header is not taken for the truth."""
    real = cv2.VideoWriter

    class CutShort:
        def __init__(self, path: str, *args):
            self.path, self.writer = Path(path), real(path, *args)

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return self.writer.isOpened()

        def write(self, frame: np.ndarray) -> None:
            self.writer.write(frame)

        def release(self) -> None:
            self.writer.release()
            data = self.path.read_bytes()
            self.path.write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(cv2, "VideoWriter", CutShort)
    out = tmp_path / "out.avi"
    argv = ["--model", str(DEFAULT_MODEL), "--source", str(video_file), "--no-display",
            "--save", str(out), "--json", "--threads", "1"]
    assert webcam.main(argv) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == helpers.VIDEO_FRAMES
    assert 0 < summary["written"] < helpers.VIDEO_FRAMES
    assert summary["failures"] == {"not written": helpers.VIDEO_FRAMES - summary["written"]}
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == helpers.VIDEO_FRAMES
    assert f"holds {summary['written']} of the {helpers.VIDEO_FRAMES} frames" in captured.err


def test_letterbox_keeps_the_aspect_ratio():
    tall = np.full((100, 50, 3), 255, np.uint8)
    out = letterbox(tall, (60, 120))  # (H, W): a 2:1 box for a 1:2 image
    cols = np.nonzero(out[:, :, 0].max(axis=0))[0]
    assert out.shape == (60, 120, 3) and (cols.min(), cols.max()) == (45, 74)
    assert letterbox(tall, (100, 50)) is tall


def _long_avi(path: Path, frames: int = 6, claimed: int = 15) -> Path:
    """An MJPG AVI whose headers claim more frames than it holds (estimating containers)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), 30 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, claimed)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, claimed)  # dwLength
    path.write_bytes(data)
    return path


def test_end_of_file_read_retries_are_not_failed_frames(runtime_models, tmp_path):
    clip = _long_avi(tmp_path / "long.avi")
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT) == 15
    summary = webcam.run(runtime_models["u8"], str(clip), display=False, threads=1)
    assert summary.frames == 6 and summary.failed == 0 and summary.stopped_by == "end of source"
    # ... but 6 of 15 announced frames is a file that ended early, said (exit 1 in the CLI).
    assert "ended early: 6 of the 15 frames its header announces" in summary.ended_early
    # One frame short of the header is an estimate's rounding, not a truncated file.
    clip = _long_avi(tmp_path / "round.avi", frames=6, claimed=7)
    summary = webcam.run(runtime_models["u8"], str(clip), display=False, threads=1)
    assert summary.frames == 6 and summary.ended_early is None


def test_webcam_flag_bounds_and_special_sources(runtime_models, video_file, tmp_path, capsys):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    base = ["--model", str(runtime_models["u8"]), "--no-display"]
    t0 = time.perf_counter()
    assert webcam.main([*base, "--source", str(fifo)]) == 2
    assert time.perf_counter() - t0 < 10
    assert "is not a regular file (a FIFO" in capsys.readouterr().err.replace("\n", "")
    for flag, value in (("--max-frames", "-3"), ("--threads", "100000"), ("--max-viewers", "0"),
                        ("--max-pixels", "0")):
        with pytest.raises(SystemExit) as exit_:
            webcam.main([*base, "--source", str(video_file), flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}: must be" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_summary_says_sigterm(runtime_models, video_file):
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.webcam", "--model", str(runtime_models["u8"]),
         "--source", str(video_file), "--loop", "--no-display", "--threads", "1", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-1500:]
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "SIGTERM"


def test_label_out_never_replaces_an_image(tmp_path, capsys):
    from train import label

    images = write_images(tmp_path / "imgs", n=2)
    before = images[0].read_bytes()
    argv = ["--images", str(tmp_path / "imgs"), "--cascade", "frontalface", "--out"]
    assert label.main([*argv, str(images[0])]) == 2
    assert "--out would overwrite the input" in capsys.readouterr().err.replace("\n", "")
    assert images[0].read_bytes() == before
    assert label.main([*argv, str(tmp_path / "imgs")]) == 2
    assert "is a folder" in capsys.readouterr().err
