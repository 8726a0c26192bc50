"""Issue 12: damaged and hostile models, special files, bounds, NaN and run-time failures."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from benchmarks import _hostile
from benchmarks._mutants import classify, difference, fuzz, mutants
from benchmarks._sealed import sealed_copy
from runtime import Localizer, infer, webcam
from runtime.errors import ModelError, UserError
from runtime.integrity import DIGEST_KEY
from runtime.models import DEFAULT_MODEL
from runtime.sources import open_frames
from tests import test_runtime_helpers as helpers
from tests.test_runtime_helpers import write_images

runtime_models = helpers.runtime_models  # the session fixture, shared by the runtime tests
video_file = helpers.video_file


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("key", ["u8", "onnx"])
def test_sealed_model_loads_and_a_damaged_copy_is_refused(runtime_models, tmp_path, key):
    src = runtime_models[key]
    sealed = sealed_copy(src, tmp_path / f"sealed{src.suffix}")
    loc = Localizer.load(sealed, threads=1)
    assert loc._backend.sealed and loc.contract.extra["integrity"] == "sha256"
    expected = Localizer.load(src, threads=1).predict(_image())
    assert loc.predict(_image()).box == expected.box  # sealing changes no weight
    data = sealed.read_bytes()
    position = len(data) // 2  # deep inside the weights
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    (tmp_path / f"flip{src.suffix}").write_bytes(damaged)
    with pytest.raises(UserError, match=f"flip{src.suffix} is damaged: its content does not "
                                        "match the digest"):
        Localizer.load(tmp_path / f"flip{src.suffix}", threads=1)
    # --no-verify: the user takes the file as it is (it loads; its answer is theirs)
    Localizer.load(tmp_path / f"flip{src.suffix}", threads=1, verify=False)


@pytest.mark.parametrize("key", ["u8", "onnx"])
def test_a_sealed_file_whose_digest_is_gone_is_damaged(runtime_models, tmp_path, key):
    src = runtime_models[key]
    data = sealed_copy(src, tmp_path / f"sealed{src.suffix}").read_bytes()
    stripped = tmp_path / f"stripped{src.suffix}"
    stripped.write_bytes(data.replace(b"edgeloc-sha256:", b"edgeloc-sha000:"))
    with pytest.raises(UserError, match="says it was sealed with a digest but the digest is "
                                        "missing"):
        Localizer.load(stripped, threads=1)
    assert Localizer.load(stripped, threads=1, verify=False).predict(_image()).label == "cat"
    # A digest the contract does not announce (another tool's copy) is still checked.
    unclaimed = sealed_copy(src, tmp_path / f"unclaimed{src.suffix}", claim=False)
    assert "integrity" not in Localizer.load(unclaimed, threads=1).contract.extra
    assert Localizer.load(unclaimed, threads=1)._backend.sealed


def test_exports_are_sealed_and_unsealed_models_load_without_a_new_warning(runtime_models, recwarn):
    assert Localizer.load(runtime_models["u8"], threads=1)._backend.sealed  # as exported
    assert Localizer.load(runtime_models["onnx_i8"], threads=1)._backend.sealed
    loc = Localizer.load(runtime_models["unsealed"], threads=1)  # an older export
    assert not loc._backend.sealed
    assert not [w for w in recwarn if DIGEST_KEY in str(w.message) or "digest" in str(w.message)]


@pytest.mark.parametrize("key", ["u8", "onnx_i8"])
def test_mutants_of_a_sealed_model_never_answer_silently(runtime_models, tmp_path, key):
    """The fast part of ``benchmarks.abuse``: 45 damaged copies, all refused cleanly."""
    sealed = sealed_copy(runtime_models[key], tmp_path / f"sealed{runtime_models[key].suffix}")
    report = fuzz(sealed, 45, verify=True, seed=1, timeout=120)
    counts = report["counts"]
    assert counts["silently different"] == counts["traceback"] == 0, report["examples"]
    assert counts["crash"] == counts["hang"] == 0, report["examples"]
    assert counts["clear error"] + counts["correct"] == 45


def test_mutants_are_deterministic_and_classified():
    data = bytes(range(256)) * 40
    first, again = list(mutants(data, 9, seed=3)), list(mutants(data, 9, seed=3))
    assert first == again and {d.split()[0] for d, _ in first} == {"flip", "zero", "truncate"}
    assert all(m != data for _, m in first if not _.startswith("zero"))
    assert classify({"values": [0.1, 0.2]}, [0.1, 0.2]) == "correct"
    assert classify({"values": [0.1, 0.3]}, [0.1, 0.2]) == "silently different"
    assert classify({"error": "x", "user_error": True}, []) == "clear error"
    assert classify({"error": "x", "user_error": False}, []) == "traceback"
    assert classify({"outcome": "crash"}, []) == "crash"
    reference = [0.1, 0.2, 0.6, 0.9, 0.2, 0.8] * 2  # two images: box (4) + scores (2)
    moved = list(reference)
    moved[8], moved[11] = 0.35, 0.5  # the second image's x1 moves 0.25, its score 0.3
    assert difference(moved, reference) == "box off by up to 80.0 px, a score by up to 0.300"


def _within(seconds: float, fn: Callable[[], object]) -> dict:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it blocks."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 (handed to the test)
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    return box


def test_special_and_oversized_model_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    err = _within(5, lambda: Localizer.load(fifo))["error"]
    assert isinstance(err, UserError) and "not a regular file" in str(err)
    err = _within(5, lambda: Localizer.load("/dev/zero"))["error"]
    assert isinstance(err, UserError) and "/dev/zero is not a regular file" in str(err)
    big = tmp_path / "big.onnx"
    with big.open("wb") as f:  # sparse: 2.1 GB on paper, nothing on disk
        f.write(b"\x08\x07")
        f.truncate(2_100_000_000)
    with pytest.raises(UserError, match="over the 1 GiB limit.*cannot pass 2 GiB"):
        Localizer.load(big)
    assert time.perf_counter() - t0 < 5  # refused from stat, never read
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(UserError, match="Too many levels of symbolic links"):
        Localizer.load(tmp_path / "a")


def test_a_folder_of_unreadable_images_ends_a_loop_after_one_pass(tmp_path, capsys):
    junk = tmp_path / "junk"
    write_images(junk, n=2, corrupt=(0, 1))
    argv = ["--model", str(DEFAULT_MODEL), "--source", str(junk), "--loop", "--no-display",
            "--json", "--threads", "1"]
    box = _within(30, lambda: webcam.main(argv))  # it spun at one core, forever
    assert box["value"] == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 0 and summary["failed"] == 2
    assert "none of the 2 images of the source could be read" in summary["ended_early"]


@pytest.mark.skipif(not os.path.exists("/proc/sys/vm/compact_memory"), reason="Linux only")
def test_an_unreadable_model_is_a_one_line_error(tmp_path, capsys):
    image = write_images(tmp_path, n=1)[0]
    # write-only for everyone, root included: a real EACCES where chmod 000 would not be
    assert infer.main(["--model", "/proc/sys/vm/compact_memory", str(image)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "cannot read model file /proc/sys/vm/compact_memory: Permission denied" in err


def test_nan_model_gives_error_lines_and_strict_json(tmp_path, capsys):
    model = _hostile.nan_model(tmp_path / "nan.onnx")
    images = write_images(tmp_path / "imgs", n=2)
    with pytest.raises(ModelError, match="non-finite outputs"):
        Localizer.load(model).predict(_image())
    out = tmp_path / "r.jsonl"
    assert infer.main(["--model", str(model), str(tmp_path / "imgs"), "--out", str(out)]) == 1

    def strict(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    lines = [json.loads(line, parse_constant=strict) for line in out.read_text().splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    assert all("non-finite" in line["error"] and "score" not in line for line in lines)
    err = capsys.readouterr().err
    assert "model failed" in err and "unreadable:" not in err and "box [nan" in err


def test_a_model_failing_at_run_time_is_not_an_unreadable_image(tmp_path, capsys):
    model = _hostile.failing_model(tmp_path / "fails.onnx")
    write_images(tmp_path / "imgs", n=2)
    assert infer.main(["--model", str(model), str(tmp_path / "imgs")]) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert all("fails.onnx failed at run time in onnxruntime" in x["error"] for x in lines)
    assert "cannot be reshaped" in lines[0]["error"]  # the engine's cause, kept
    assert "unreadable:" not in captured.err and "model failed" in captured.err


def test_model_loading_errors_name_the_file(runtime_models, tmp_path, capsys):
    meta = _hostile.bad_metadata_model(tmp_path / "meta.onnx")
    with pytest.raises(UserError, match="meta.onnx has metadata that is not UTF-8"):
        Localizer.load(meta)
    alloc = _hostile.alloc_failure_model(runtime_models["u8"], tmp_path / "alloc.tflite")
    with pytest.raises(UserError, match="alloc.tflite cannot be prepared by .*tensor "
                                        "allocation failed"):
        Localizer.load(alloc)
    assert infer.main(["--model", str(alloc), str(write_images(tmp_path / "i", n=1)[0])]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_truncated_jpeg_and_pixel_limit_are_error_lines(tmp_path, capsys, runtime_models):
    cut = _hostile.truncated_jpeg(tmp_path / "cut.jpg", size=(60, 80))
    # the header says 30000x30000 but holds one row: only a header check can refuse it
    # with this message; decoding would allocate 900 MB (the abuse script measures that)
    huge = _hostile.png_claiming(tmp_path / "huge.png", 30000, 30000)
    small = write_images(tmp_path / "ok", n=1, size=(60, 80))[0]
    argv = ["--model", str(runtime_models["u8"]), str(cut), str(huge), str(small)]
    assert infer.main([*argv, "--max-pixels", "5000"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "cut.jpg is a truncated JPEG" in lines[0]["error"]
    assert "huge.png is 30000x30000 (900 MP), over the 0.005 MP limit" in lines[1]["error"]
    assert "error" not in lines[2] and lines[2]["width"] == 80
    assert infer.main([*argv[:2], str(small), "--max-pixels", "4799"]) == 1  # 80x60 = 4800
    assert "pass --max-pixels 4800" in capsys.readouterr().out


def test_video_sources_over_the_pixel_limit_are_refused_before_a_frame_is_decoded(
        video_file, capsys):
    # 640x480 = 307200 pixels; six 8000x8000 MJPG frames took 750 MB before this check
    argv = ["--model", str(DEFAULT_MODEL), "--source", str(video_file), "--no-display"]
    assert webcam.main([*argv, "--max-pixels", "300000"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{video_file} is 640x480 (0.307 MP), over the 0.3 MP limit; pass --max-pixels " \
        "307200" in err
    assert webcam.main([*argv, "--max-pixels", "307200", "--max-frames", "1"]) == 0
    source = open_frames(str(video_file), max_pixels=307200)
    source.max_pixels = 300000  # a stream whose frames grew after it opened
    frame = source.read()
    source.close()
    assert frame.image is None and "frame 0 is 640x480 (0.307 MP), over the" in frame.error
