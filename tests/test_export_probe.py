"""The export CLIs against odd flag values, damaged run folders and signals: one line and
exit 2 for a user mistake, nothing written where it was not asked for, no temporary files
left behind by SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An untrained small_cnn at 32 px saved as a run (the error paths need no training)."""
    import keras

    from train.model import ModelSpec, build_model

    keras.utils.set_random_seed(0)
    spec = ModelSpec(backbone="small_cnn", image_size=SIZE, alpha=0.5, head_units=16)
    folder = tmp_path_factory.mktemp("run")
    build_model(spec).save(folder / "model.keras")
    config = {"model": {**asdict(spec), "labels": list(spec.labels)}, "data": {"source": "blobs"}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _cli(main, argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr as one line) of an export CLI."""
    try:
        rc = main(argv)
    except SystemExit as done:
        rc = int(done.code)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, captured.err
    return rc, " ".join(captured.err.split())


def _damaged_runs(run_dir: Path, tmp: Path) -> list[tuple[str, Path, str]]:
    """(name, run folder, expected message) for run folders whose config.json is damaged."""
    good = json.loads((run_dir / "config.json").read_text())

    def edit(section: str, key: str, value) -> dict:
        config = json.loads(json.dumps(good))
        config[section][key] = value
        return config

    texts = [
        ("a list", "[]", "the file is []"),
        ("null", "null", "the file is null"),
        ("model is null", json.dumps({**good, "model": None}), "'model' is null"),
        ("data is a string", json.dumps({**good, "data": "blobs"}), "'data' is \"blobs\""),
        ("labels a string", json.dumps(edit("model", "labels", "ab")), "model.labels"),
        ("labels a number", json.dumps(edit("model", "labels", 5)), "model.labels"),
        ("labels repeated", json.dumps(edit("model", "labels", ["none", "none"])),
         "model.labels"),
        ("box format", json.dumps(edit("model", "box_format", "zzz")), "model.box_format"),
        ("source a number", json.dumps(edit("data", "source", 5)), "data.source"),
        ("data_dir a number", json.dumps(edit("data", "data_dir", 7)), "data.data_dir"),
        ("seed a string", json.dumps(edit("data", "seed", "x")), "data.seed"),
        ("val_fraction NaN", json.dumps(edit("data", "val_fraction", float("nan"))),
         "data.val_fraction"),
    ]
    cases = []
    for name, text, message in texts:
        folder = tmp / name.replace(" ", "_")
        folder.mkdir()
        shutil.copy(run_dir / "model.keras", folder)
        (folder / "config.json").write_text(text)
        cases.append((name, folder, f"config.json: {message}"))
    binary = tmp / "binary"
    binary.mkdir()
    shutil.copy(run_dir / "model.keras", binary)
    (binary / "config.json").write_bytes(b"\xff\xfe\x00 garbage")
    cases.append(("not UTF-8", binary, "config.json is not valid JSON"))
    for kind in ("folder", "broken link", "fifo"):
        folder = tmp / kind.replace(" ", "_")
        folder.mkdir()
        shutil.copy(run_dir / "model.keras", folder)
        config = folder / "config.json"
        if kind == "folder":
            config.mkdir()
        elif kind == "broken link":
            config.symlink_to(folder / "gone.json")
        else:
            os.mkfifo(config)  # reading it would wait forever for a writer
        cases.append((kind, folder, "config.json is not a regular file"))
    return cases


def test_a_damaged_config_json_is_refused_in_one_line(run_dir, tmp_path, capsys):
    """Wrong types in config.json gave AttributeError/TypeError tracebacks, labels "ab" or
    repeated ones exported a file with broken labels, and a config.json that is a folder or
    a broken link was taken for none (labels and box format then guessed)."""
    from export._cli import main_tflite

    for name, folder, message in _damaged_runs(run_dir, tmp_path):
        rc, err = _cli(main_tflite, ["--model", str(folder), "--verify-size", "8",
                                     "--out", str(tmp_path / "m.tflite")], capsys)
        assert rc == 2 and message in err and err.count("error") == 1, (name, err)
    assert not (tmp_path / "m.tflite").exists()


def test_empty_path_flags_are_refused_not_taken_for_the_current_folder(
    run_dir, tmp_path, monkeypatch, capsys
):
    """--out-dir "" wrote the models into the current folder, --calib "" calibrated on its
    pictures and --out "" wrote to the run's default file: an unset shell variable."""
    import cv2
    import numpy as np

    from export._cli import main_export, main_make_models, main_tflite

    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "holiday.png"), np.zeros((40, 40, 3), np.uint8))
    m = ["--model", str(run_dir), "--no-verify"]
    cases = [
        (main_tflite, m + ["--out", ""], "--out is empty"),
        (main_export, m + ["--out-dir", "", "--formats", "tflite", "--quantize", "none"],
         "--out-dir is empty"),
        (main_tflite, m + ["--quantize", "int8", "--calib", ""], "--calib is empty"),
        (main_tflite, ["--model", " ", "--no-verify"], "--model is empty"),
        (main_tflite, m + ["--verify-data", "blobs", "--verify-dir", ""], "--verify-dir is empty"),
        (main_make_models, ["--run", "", "--out-dir", str(tmp_path)], "--run is empty"),
        (main_make_models, ["--run", str(run_dir), "--out-dir", str(tmp_path), "--name", ""],
         "--name is empty"),
    ]
    before = sorted(run_dir.iterdir())
    for main, argv, message in cases:
        rc, err = _cli(main, argv, capsys)
        assert rc == 2 and message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.png"]
    assert sorted(run_dir.iterdir()) == before


def test_odd_sizes_names_and_folders_get_one_line(run_dir, tmp_path, capsys):
    """Sizes a synthetic source would try to fill (a MemoryError traceback before), names
    too long for the file system (OSError tracebacks), an --out folder for ONNX (the hint
    said FILE.tflite), and empty --formats/--quantize lists."""
    from export._cli import main_export, main_onnx, main_tflite

    m = ["--model", str(run_dir)]
    long = "a" * 300
    cases = [
        (main_tflite, m + ["--verify-size", str(10**12)], "--verify-size must be at most 10000"),
        (main_tflite, m + ["--quantize", "int8", "--calib-size", str(10**12), "--no-verify"],
         "--calib-size must be at most 10000"),
        (main_tflite, m + ["--calib-size", "0"], "--calib-size must be at least 1"),
        (main_tflite, m + ["--no-verify", "--out", str(tmp_path / f"{long}.tflite")],
         "File name too long"),
        (main_export, m + ["--no-verify", "--out-dir", str(tmp_path / long)],
         "File name too long"),
        (main_tflite, ["--model", str(tmp_path / long), "--no-verify"], "File name too long"),
        (main_onnx, m + ["--no-verify", "--out", str(run_dir)], "pass --out FILE.onnx"),
        (main_export, m + ["--formats", " ,"], "--formats is empty"),
        (main_export, m + ["--quantize", ""], "--quantize is empty"),
    ]
    for main, argv, message in cases:
        rc, err = _cli(main, argv, capsys)
        assert rc == 2 and message in err, (argv, err)
    assert list(tmp_path.iterdir()) == []


def test_a_format_or_precision_named_twice_is_exported_once():
    from export.formats import jobs_for

    assert jobs_for("tflite,tflite", "none,int8,none") == [("tflite", "none"), ("tflite", "int8")]


def test_a_data_folder_a_synthetic_source_would_ignore_is_refused(run_dir, tmp_path, capsys):
    """--calib-dir with the run's synthetic source calibrated on that source and wrote the
    folder into the contract as if it had been used."""
    from export._cli import main_tflite

    folder = tmp_path / "photos"
    folder.mkdir()
    m = ["--model", str(run_dir), "--out", str(tmp_path / "m.tflite")]
    cases = [
        (m + ["--quantize", "int8", "--calib-dir", str(folder), "--no-verify"],
         f"--calib-dir {folder} is read only by a file source"),
        (m + ["--quantize", "int8", "--calib", "blobs", "--calib-dir", str(folder),
              "--no-verify"], "but the data source is 'blobs'"),
        (m + ["--verify-data", "blobs", "--verify-dir", str(folder)],
         f"--verify-dir {folder} is read only by a file source"),
    ]
    for argv, message in cases:
        rc, err = _cli(main_tflite, argv, capsys)
        assert rc == 2 and message in err, (argv, err)
    assert not (tmp_path / "m.tflite").exists()


def test_make_models_writes_only_into_its_out_dir(run_dir, tmp_path, capsys):
    """A label "../../x" in config.json named the files ../../x_int8.tflite: written two
    folders above --out-dir; --name "../x" did the same."""
    from export._cli import main_make_models
    from export.make_models import default_name

    for label in ("../../evil", "a/b", ".hidden", "", " "):
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        (run / "config.json").write_text(json.dumps({"model": {"labels": ["none", label]}}))
        assert default_name(run) == "model", label
    (run / "config.json").write_text(json.dumps({"model": {"labels": 5}}))
    assert default_name(run) == "model"  # a damaged file: the export says what is wrong
    out = tmp_path / "models"
    out.mkdir()
    for name in ("../escape", "a/b", ".x"):
        rc, err = _cli(main_make_models, ["--run", str(run_dir), "--out-dir", str(out),
                                          "--name", name], capsys)
        assert rc == 2 and "must be a plain file name stem" in err, (name, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "run"]
    assert list(out.iterdir()) == []


def test_an_interrupt_that_tensorflow_turns_into_another_error_is_still_an_interrupt(
    run_dir, monkeypatch, capsys
):
    """Ctrl-C landing in TensorFlow's C++ nest utilities came out as a bare TypeError: a
    traceback and exit 1, the code of a failed verification. A real error keeps its
    traceback; the signal handlers are restored afterwards."""
    import export._cli as cli

    def interrupted_inside_tensorflow(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            raise TypeError from None  # what TensorFlow's pybind code made of it

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "export_all", interrupted_inside_tensorflow)
    rc = cli.main_tflite(["--model", str(run_dir), "--no-verify"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before

    def bug(*args, **kwargs):
        raise TypeError("a real bug")

    monkeypatch.setattr(cli, "export_all", bug)
    with pytest.raises(TypeError, match="a real bug"):
        cli.main_tflite(["--model", str(run_dir), "--no-verify"])


@pytest.mark.slow
def test_sigterm_mid_export_leaves_no_temporary_files(run_dir, tmp_path):
    """SIGTERM (timeout, systemd, docker stop) killed an export outright: its SavedModel
    scratch folder and its half-verified .edgeloc-tmp file stayed behind."""
    from runtime.atomic import scratch_root

    out = tmp_path / "out"
    out.mkdir()
    scratch = scratch_root()
    cmd = [sys.executable, "-m", "export.tflite", "--model", str(run_dir), "--out",
           str(out / "m.tflite"), "--verify-size", "8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    mine = f".{proc.pid}-"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.startswith(mine) for p in scratch.iterdir()):  # converting now
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
    assert not any(p.name.startswith(mine) for p in scratch.iterdir())


def test_a_stop_that_library_code_swallows_still_stops_the_export(tmp_path):
    """A SIGTERM landing inside TensorFlow's C++ code was swallowed there (printed as a
    SystemError or not at all) and the export went on to write its model with exit 0: the
    stop is recorded and raised again before a model file is committed."""
    from runtime._cli import Terminated, raise_if_stopped, sigterm_stops

    before = signal.getsignal(signal.SIGTERM)
    stops: list[str] = []
    with pytest.raises(Terminated), sigterm_stops(stops):
        try:  # what native code did with the interrupt
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except BaseException:  # noqa: BLE001
            pass
        raise_if_stopped()
    assert stops == ["SIGTERM"]
    raise_if_stopped()  # outside the block nothing is pending
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_where_tensorflow_may_be_the_caller_is_raised_a_moment_later():
    """Raised in a TensorFlow frame called from its C++ code (or an import it started), the
    interrupt came out as a printed SystemError traceback: it is raised just after, outside
    such frames, or when the block ends."""
    from types import SimpleNamespace

    from runtime._cli import Terminated, sigterm_stops

    def frame(file: str, caller: object = None) -> SimpleNamespace:
        return SimpleNamespace(f_code=SimpleNamespace(co_filename=file), f_back=caller)

    import keras
    import tensorflow as tf

    home = os.path.dirname(tf.__file__)
    nest = frame(os.path.join(home, "python", "util", "nest_util.py"))
    from_cxx = frame("<frozen abc>", frame("<frozen abc>", nest))  # isinstance from C++
    stops: list[str] = []
    with sigterm_stops(stops):
        handler = signal.getsignal(signal.SIGTERM)
        handler(signal.SIGTERM, from_cxx)  # returns: deferred
        with pytest.raises(Terminated):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
    assert stops == ["SIGTERM"]  # one stop, though raised twice

    with pytest.raises(Terminated), sigterm_stops():
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, from_cxx)
    # the block ended before the deferred stop was raised: it is raised as the block ends

    trainer = os.path.join(os.path.dirname(keras.__file__), "src", "backend", "tensorflow",
                           "trainer.py")  # Keras's fit loop: plain Python, raised at once
    for elsewhere in (frame("<frozen abc>", frame("/a/b.py")), frame(trainer)):
        with sigterm_stops(), pytest.raises(Terminated):  # by the handler itself, not later
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, elsewhere)
