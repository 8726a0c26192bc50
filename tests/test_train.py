"""Training end to end on tiny settings: loss drops, resume after interruption, CLI errors."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from types import SimpleNamespace

import cv2
import keras
import numpy as np
import pytest
from rich.console import Console

from train.__main__ import main as train_main
from train.config import resolve_config
from runtime.errors import UserError
from train.evaluate import evaluate_model, main as evaluate_main
from train.fit import RESUME_DIR, STATE_FILE, train

STEPS = 12


def tiny_config(**flags):
    flags = {"data": "blobs", "backbone": "small_cnn", "image_size": 32, "epochs": 3,
             "steps_per_epoch": STEPS, "batch_size": 16, "train_size": 192, "lr": 3e-3,
             "head_units": 32, **flags}
    config = resolve_config(**flags)
    config.data.val_size = config.data.test_size = 32
    return config


class Interrupt(keras.callbacks.Callback):
    """Simulates a crash (e.g. a killed process) at the start of epoch ``at`` (0-based)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated interruption")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.start_iterations = [], None

    def on_train_begin(self, logs=None):
        self.start_iterations = int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_tiny_training_run_learns_and_writes_the_run_dir(tmp_path):
    out = io.StringIO()
    summary = train(tiny_config(epochs=4), tmp_path, console=Console(file=out, width=120))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[-1]["box_iou"] > history[0]["box_iou"]
    for name in ("model.keras", "config.json", "metrics.json", "history.csv", "predictions.png"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["images"] == 32 and 0.0 <= metrics["test"]["mean_iou"] <= 1.0
    assert summary["best_epoch"] == max(history, key=lambda r: r["val_box_iou"])["epoch"]
    assert "epoch 4/4" in out.getvalue()  # the rich progress printed every epoch
    assert not list(tmp_path.glob(".tmp*")) and not list((tmp_path / RESUME_DIR).glob("tmp-*"))


def test_resume_after_interruption_loses_no_finished_epoch(tmp_path):
    config = tiny_config()
    console = Console(file=io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, console=console, callbacks=[Interrupt(at=1)])
    state = json.loads((tmp_path / RESUME_DIR / STATE_FILE).read_text())
    assert state["epoch"] == 1 and not state["finished"]
    first = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in first] == [1]
    ckpt = keras.models.load_model(tmp_path / "model.keras", compile=False)  # epoch-1 checkpoint
    x = np.zeros((1, 32, 32, 3), np.uint8)
    before = np.asarray(ckpt(x)["box"])

    recorder = Recorder()
    train(tiny_config(), tmp_path, console=console, callbacks=[recorder])
    assert recorder.epochs == [1, 2]  # continues with the second epoch
    assert recorder.start_iterations == STEPS  # optimizer state (and lr schedule) restored
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0] == first[0]
    assert json.loads((tmp_path / RESUME_DIR / STATE_FILE).read_text())["finished"]
    assert np.isfinite(before).all()

    # Rerunning a finished run is a no-op; more epochs extend it; another config is refused.
    again = Recorder()
    train(tiny_config(), tmp_path, console=console, callbacks=[again])
    assert again.epochs == []
    with pytest.raises(UserError, match="image_size"):
        train(tiny_config(image_size=48), tmp_path, console=console)


def test_cli_and_evaluate_on_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--data", "blobs", "--backbone", "small_cnn", "--image-size", "32", "--epochs", "1",
            "--steps-per-epoch", "3", "--batch-size", "8", "--train-size", "24", "--no-progress",
            "--out", str(run)]
    assert train_main(args) == 0
    assert "test mean IoU" in capsys.readouterr().out
    assert evaluate_main(["--model", str(run), "--size", "16"]) == 0
    printed = capsys.readouterr().out
    assert "CorLoc@0.75" in printed and "mean IoU" in printed
    report = json.loads((run / "evaluation-blobs-test.json").read_text())
    assert report["images"] == 16 and report["split"] == "test"
    assert list(report["per_class_accuracy"])[0] == "none" and 0 <= report["corloc@0.5"] <= 1


@pytest.mark.parametrize("damage", ["state", "weights"])
def test_damaged_resume_files_are_one_line_errors(tmp_path, capsys, damage):
    run = tmp_path / "run"
    args = ["--data", "blobs", "--backbone", "small_cnn", "--image-size", "32", "--steps-per-epoch", "2",
            "--batch-size", "8", "--train-size", "16", "--no-progress", "--out", str(run)]
    assert train_main([*args, "--epochs", "1"]) == 0
    resume = run / RESUME_DIR
    state = json.loads((resume / STATE_FILE).read_text())
    path = resume / STATE_FILE if damage == "state" else resume / state["weights"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half
    capsys.readouterr()
    assert train_main([*args, "--epochs", "2"]) == 2
    out = capsys.readouterr()
    printed = " ".join((out.out + out.err).split())
    assert str(path) in "".join(printed.split())  # rich may wrap the long path
    assert "--overwrite" in printed and "Traceback" not in out.out + out.err
    assert train_main([*args, "--epochs", "2", "--overwrite"]) == 0  # the fix the message names


@pytest.mark.parametrize("flags, message", [
    (["--data", "nope"], "unknown data source 'nope'"),
    (["--data", "blobs", "--backbone", "nope"], "--backbone: invalid choice: 'nope' (choose from 'mobilenet_v2'"),
    (["--data", "blobs", "--loss", "nope"], "--loss: invalid choice: 'nope' (choose from 'mse'"),
    (["--preset", "nope"], "--preset: invalid choice: 'nope' (choose from 'default', 'demo'"),
    (["--data", "voc"], "--data-dir"),
    (["--data", "voc", "--data-dir", "/nonexistent/dir"], "does not exist"),
    (["--data", "cat-on-scenes", "--data-dir", "."], "--data cat-on-scenes is built in and reads no --data-dir"),
    (["--data", "blobs", "--backbone", "small_cnn", "--weights", "/nonexistent.h5"], "not found"),
    # --aug and --paste-opt: one KEY=VALUE parser, values checked before any work starts
    (["--data", "blobs", "--aug", "rotate"], "--aug 'rotate' is not KEY=VALUE"),
    (["--data", "blobs", "--aug", "rotate=x"], "--aug 'rotate=x': the value must be a number"),
    (["--data", "blobs", "--aug", "scale=0.5"], "augmentation scale must be LOW:HIGH"),
    (["--data", "blobs", "--aug", "rotate=5"], "augmentation rotate must be a probability in [0, 1]"),
    (["--data", "blobs", "--aug", "fill=300"], "fill must be a grey level 0-255 or none"),
    (["--data", "blobs", "--aug", "nope=1"], "unknown augmentation 'nope'; valid: crop, scale"),
    (["--data", "blobs", "--augment", "none", "--aug", "jpeg=0.5"], "need a profile other than 'none'"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "scale=0.5"],
     "--paste-opt: paste scale takes several numbers (LOW:HIGH)"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "bogus=1"],
     "--paste-opt: unknown paste option(s) bogus; valid: p, scale"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "p=2"], "paste p must be a share in [0, 1]"),
    # numbers that used to train silently wrong (or end in a traceback)
    (["--data", "blobs", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--data", "blobs", "--lr", "-1"], "--lr must be above 0, got -1"),
    (["--data", "blobs", "--decay-rate", "0"], "--decay-rate must be above 0"),
    (["--data", "blobs", "--steps-per-epoch", "0"], "--steps-per-epoch must be at least 1"),
    (["--data", "blobs", "--alpha", "0"], "--alpha must be above 0"),
    # NaN trained to a NaN model and exited 0; out-of-range shares trained silently wrong
    (["--data", "blobs", "--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--data", "blobs", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--data", "blobs", "--decay-rate", "5"], "--decay-rate must be above 0 and at most 1, got 5"),
    # NumPy's own words, naming no flag ("Seed must be between 0 and 2**32 - 1")
    (["--data", "blobs", "--seed", "-1"], "--seed must be at least 0 and at most 4294967295, got -1"),
    (["--data", "blobs", "--seed", "4294967296"], "--seed must be at least 0 and at most 4294967295"),
    (["--data", "blobs", "--negatives", "5"], "--negatives must be at least 0 and at most 1"),
    (["--preset", "real", "--data", "blobs", "--paste", "3"], "--paste must be at least 0 and at most 1"),
    # values that passed the checks, then ended in a traceback mid-training or trained junk
    (["--preset", "real", "--data", "blobs", "--paste-opt", "blends=nan:1:1"], "paste blends are 3 finite"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "margin=-1:-0.5"], "paste margin must satisfy"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "aspect=1e6"], "paste aspect must be in [0, 1]"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "canvas=nan"], "paste canvas must be a side"),
    (["--preset", "real", "--data", "blobs", "--paste-opt", "part=5"], "paste part must be a share"),
    (["--data", "blobs", "--aug", "fill=inf"], "augmentation fill: 'inf' is not a number"),
    (["--data", "blobs", "--aug", "scale=1:inf"], "augmentation scale must be LOW:HIGH"),
    (["--data", "blobs", "--aug", "aspect=nan"], "augmentation aspect must be in [0, 1]"),
    (["--data", "blobs", "--aug", "color_strength=inf"], "color_strength in [0, 3]"),
    (["--data", "blobs:inf", "cat-on-black:1"], "the weight must be above 0 and at most 1e6"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, message):
    assert train_main([*flags, "--out", str(tmp_path / "run")]) == 2
    out = capsys.readouterr()
    assert message in " ".join((out.out + out.err).split())
    assert "Traceback" not in out.out + out.err
    assert not (tmp_path / "run" / "config.json").exists()


def test_cli_errors_stay_one_line_when_piped(tmp_path, capsys):
    """rich wraps at 80 columns when the output is not a terminal: a long path split the
    one-line message over three lines in logs and pipes."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "data"
    assert train_main(["--data", "csv", "--data-dir", str(deep), "--out", str(tmp_path / "run")]) == 2
    assert evaluate_main(["--model", str(deep / "run")]) == 2
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("error:") for line in lines), lines
    assert all(str(deep) in line for line in lines)


def test_evaluate_cli_bad_model_exits_2(tmp_path, capsys):
    assert evaluate_main(["--model", str(tmp_path / "missing")]) == 2
    assert "no trained model" in capsys.readouterr().out


@pytest.mark.parametrize("keep, saved", [("best", [1, 1, 3, 3]), ("last", [1, 2, 3, 4])])
def test_atomic_checkpoint_keeps_best_or_last(tmp_path, keep, saved):
    from train.fit import AtomicCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ckpt = AtomicCheckpoint(tmp_path / "model.keras", "val_box_iou", keep=keep)
    ckpt.set_model(model)
    held = []
    for epoch, iou in enumerate([0.5, 0.4, 0.7, 0.6]):
        model.layers[-1].bias.assign([float(epoch + 1)])  # marks the epoch in the weights
        ckpt.on_epoch_end(epoch, {"val_box_iou": iou})
        loaded = keras.models.load_model(tmp_path / "model.keras")
        held.append(int(loaded.layers[-1].bias.numpy()[0]))
    assert held == saved
    assert ckpt.best_epoch == saved[-1]
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temp files left


def _tiny_args(out):
    return ["--data", "blobs", "--backbone", "small_cnn", "--image-size", "32", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "8", "--train-size", "16", "--no-progress",
            "--out", str(out)]


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_that_would_destroy_something_is_refused_before_training(tmp_path, capsys):
    """--out may not be a file, a folder of other files, the data folder, or the --init run;
    --overwrite removes only a run's own files."""
    run = tmp_path / "run"
    assert train_main(_tiny_args(run)) == 0
    kept = _files(run)
    data = tmp_path / "data"  # a CSV beside its images, one named like a run's file
    data.mkdir()
    (data / "predictions.png").write_bytes(cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1])
    (data / "history.csv").write_text("image,x1,y1,x2,y2,label\npredictions.png,5,5,30,30,cat\n")
    stray = tmp_path / "stray.txt"
    stray.write_text("keep me")
    csv = ["--data", "csv", "--data-dir", str(data / "history.csv")]
    cases = [
        (_tiny_args(run) + ["--init", str(run), "--overwrite"], "is inside --out"),
        (_tiny_args(run) + ["--init", str(run / "model.keras")], "is inside --out"),
        (_tiny_args(stray), "is a file; pass a folder"),
        (_tiny_args(stray) + ["--overwrite"], "is a file; pass a folder"),
        (_tiny_args(data) + ["--overwrite"], "already holds files that are not an edgeloc run"),
        (_tiny_args(data) + csv, "is the folder of --data-dir"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert train_main(argv) == 2, argv
        out = capsys.readouterr()
        assert message in " ".join((out.out + out.err).split()) and "Traceback" not in out.out + out.err
    assert _files(run) == kept and stray.read_text() == "keep me"
    assert {p.name for p in data.iterdir()} == {"predictions.png", "history.csv"}
    # --overwrite of a real run clears the run's files only: a user's file in resume/ stays
    (run / RESUME_DIR / "notes.txt").write_text("mine")
    (run / RESUME_DIR / "sub").mkdir()
    assert train_main(_tiny_args(run) + ["--overwrite"]) == 0
    assert (run / RESUME_DIR / "notes.txt").read_text() == "mine" and (run / "model.keras").is_file()


def test_evaluate_never_writes_over_the_model_it_reads(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(_tiny_args(run)) == 0
    model = (run / "model.keras").read_bytes()
    for out in (run / "model.keras", run / "config.json", run / "metrics.json"):
        capsys.readouterr()
        assert evaluate_main(["--model", str(run), "--size", "4", "--out", str(out)]) == 2
        assert "would overwrite the input" in " ".join(capsys.readouterr().out.split())
    assert evaluate_main(["--model", str(run), "--seed", "-1"]) == 2
    assert "--seed at least 0" in capsys.readouterr().out
    # The run's resume state and exported models were replaced by the report, silently.
    (run / "model_fp32.tflite").write_bytes(b"exported")
    (run / "model_int8.onnx").write_bytes(b"exported")
    (run / "model_int8.json").write_text("{}")  # an exported model's contract sidecar
    kept = {f: f.read_bytes() for f in (*(run / RESUME_DIR).iterdir(), *run.glob("model_*"))}
    for out in kept:
        capsys.readouterr()
        assert evaluate_main(["--model", str(run), "--size", "4", "--out", str(out)]) == 2
        assert "would overwrite the input" in " ".join(capsys.readouterr().out.split())
    assert {f: f.read_bytes() for f in kept} == kept
    assert (run / "model.keras").read_bytes() == model
    capsys.readouterr()  # a missing folder was a FileNotFoundError traceback after the work
    assert evaluate_main(["--model", str(run), "--out", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().out
    # A FIFO (or /dev/null) was replaced by a regular file; it is written in place.
    fifo, got = tmp_path / "fifo", {}
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.update(text=fifo.read_text()), daemon=True)
    reader.start()
    assert evaluate_main(["--model", str(run), "--size", "4", "--out", str(fifo)]) == 0
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and json.loads(got["text"])["images"] == 4


def test_evaluate_model_holds_one_batch_of_images_at_a_time():
    fetched, at_call = [], []

    class Source:  # every sample was decoded up front: ~200 KB each, --size 100000 = 20 GB
        labels = ["none", "blob"]

        def __len__(self):
            return 10

        def __getitem__(self, i):
            fetched.append(i)
            return SimpleNamespace(image=np.zeros((8, 8, 3), np.uint8), box=(0.1, 0.1, 0.5, 0.5),
                                   label=1)

    def model(batch, training=False):
        at_call.append(len(fetched))
        return {"box": np.tile([0.1, 0.1, 0.5, 0.5], (len(batch), 1)),
                "score": np.tile([0.1, 0.9], (len(batch), 1))}

    report = evaluate_model(model, Source(), image_size=8, box_format="xyxy",
                            labels=["none", "blob"], batch_size=4)
    assert at_call == [4, 8, 10] and fetched == list(range(10))
    assert report["images"] == 10 and report["mean_iou"] == pytest.approx(1.0)


def test_every_skipped_data_entry_is_listed_in_the_run(tmp_path, capsys):
    """The log shows the first ten skipped entries; the run keeps the whole list."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,bbox,label"]
    for i in range(12):
        cv2.imwrite(str(data / f"p{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        rows.append(f'p{i}.png,"[5, 5, 30, 30]",cat')
    rows += [f"missing{i}.png,\"[5, 5, 30, 30]\",cat" for i in range(12)]  # 12 skipped entries
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    args = ["--data", "csv", "--data-dir", str(data / "labels.csv"), "--backbone", "small_cnn",
            "--image-size", "32", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
            "--no-progress", "--out", str(run)]
    assert train_main(args) == 0
    listed = (run / "data-problems.txt").read_text().splitlines()
    assert len(listed) == 12 and all("missing" in line for line in listed)
    assert json.loads((run / "metrics.json").read_text())["data_problems"] == 12
    assert "data-problems.txt" in "".join(capsys.readouterr().out.split())

