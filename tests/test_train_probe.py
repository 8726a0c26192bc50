"""Hostile probe of the training CLI, round 2: resume files that are damaged, swapped or not
files, empty path flags, runaway sizes. Each case once trained silently wrong, from scratch
over a finished model, or ended in a traceback after an epoch of work."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from train.__main__ import main as train_main
from train.evaluate import main as evaluate_main
from train.fit import RESUME_DIR, STATE_FILE


def _args(out, *extra):
    return ["--data", "blobs", "--backbone", "small_cnn", "--image-size", "32", "--alpha", "0.5",
            "--head-units", "16", "--steps-per-epoch", "2", "--batch-size", "8", "--train-size",
            "16", "--no-progress", "--out", str(out), *extra]


def _refused(capsys, argv, message):
    capsys.readouterr()
    assert train_main(argv) == 2, argv
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())
    assert message in text and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished one-epoch runs of the same architecture (another seed)."""
    root = tmp_path_factory.mktemp("runs")
    for name, seed in (("base", "0"), ("other", "7")):
        assert train_main(_args(root / name, "--epochs", "1", "--seed", seed)) == 0
    return root


def _set_state(run, **fields):
    path = run / RESUME_DIR / STATE_FILE
    state = json.loads(path.read_text())
    state.update(fields)
    path.write_text(json.dumps(state))


def _damage(run, other, how):
    resume, state = run / RESUME_DIR, run / RESUME_DIR / STATE_FILE
    if how == "state folder":
        state.unlink()
        state.mkdir()
    elif how == "state fifo":
        state.unlink()
        os.mkfifo(state)
    elif how == "state link to another run's":
        state.unlink()
        state.symlink_to(other / RESUME_DIR / STATE_FILE)
    elif how == "state copied from another run":
        shutil.copy(other / RESUME_DIR / STATE_FILE, state)
    elif how == "weights from another run":
        name = json.loads(state.read_text())["weights"]
        shutil.copy(other / RESUME_DIR / name, resume / name)
    elif how == "no state beside a model":
        shutil.rmtree(resume)
    elif how == "resume is a file":
        shutil.rmtree(resume)
        resume.write_text("x")
    elif how == "model is a folder":
        (run / "model.keras").unlink()
        (run / "model.keras").mkdir()
    else:  # a field of the state
        key, value = how.split("=", 1)
        _set_state(run, **{key: json.loads(value)})


@pytest.mark.parametrize("how, message", [
    # a state that is no file was "nothing to resume": epoch 1 trained again from scratch
    ("state folder", "is not a regular file"),
    ("state fifo", "is not a regular file"),
    ("state link to another run's", "is damaged (not the regular file the run wrote"),
    # another run's state or weights of the same architecture were trained on silently
    ("state copied from another run", "is not the file this run saved"),
    ("weights from another run", "is not the file this run saved"),
    # a finished model without its state was trained over from scratch, exit 0
    ("no state beside a model", "holds a trained model but no resume state"),
    # fields of the wrong type: tracebacks (some after an epoch of training) or epoch -1
    ("history=5", "history is not a list"),
    ("checkpoint=\"x\"", "checkpoint is not an object"),
    ("early_stopping=\"x\"", "early_stopping is not an object"),
    ("train_seconds=\"x\"", "train_seconds 'x' is not a duration"),
    ("epoch=-1", "epoch -1 is not a count"),
    ("epoch=true", "epoch True is not a count"),
    ("weights=\"../model.keras\"", "weights '../model.keras' is not an epoch-NNNN.weights.h5"),
    # os.replace onto these failed with a traceback after the epoch
    ("resume is a file", "is a file where the run keeps its resume state"),
    ("model is a folder", "is not a regular file (a folder, FIFO or device)"),
])
def test_damaged_swapped_or_odd_resume_files_are_refused(runs, tmp_path, capsys, how, message):
    run = tmp_path / "run"
    shutil.copytree(runs / "base", run, symlinks=True)
    _damage(run, runs / "other", how)
    text = _refused(capsys, _args(run, "--epochs", "2"), message)
    assert "pass --overwrite" in text or "move it away" in text


def test_a_run_with_a_damaged_config_names_it_and_overwrite_clears_it(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "base", run)
    (run / "config.json").write_text('{"model": {"backbone"')  # cut short
    _refused(capsys, _args(run, "--epochs", "2"), "config.json is not valid JSON")
    assert train_main(_args(run, "--epochs", "1", "--overwrite")) == 0  # was refused as no run


def test_a_model_replaced_during_training_is_not_evaluated(runs, tmp_path, capsys):
    """The summary's metrics were of whatever file lay at RUN/model.keras at the end."""
    import keras

    from runtime.errors import UserError
    from train.__main__ import config_from_args, parse_args
    from train.fit import train

    class Swap(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            shutil.copy(runs / "other" / "model.keras", run / "model.keras")

    run = tmp_path / "run"
    config = config_from_args(parse_args(_args(run, "--epochs", "1")))
    with pytest.raises(UserError, match="is not the file this run saved"):
        train(config, run, callbacks=[Swap()], progress=False)


def test_a_finished_run_with_a_damaged_summary_is_evaluated_again(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "base", run)
    (run / "metrics.json").write_text("{")
    assert train_main(_args(run, "--epochs", "1")) == 0  # was a JSONDecodeError traceback
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize("flags, message", [
    (["--init", ""], "--init is empty"),  # trained from scratch silently
    (["--cache-dir", "", "--input-pipeline", "tf"], "--cache-dir is empty"),  # cached into the cwd
    (["--data", "csv", "--data-dir", ""], "--data-dir is empty"),  # read the current folder
    (["--batch-size", "1000000000"], "--batch-size must be at least 1 and at most 65536"),  # hung
    (["--image-size", "100000"], "--image-size must be at least 8 and at most 4096"),  # OOM
    (["--image-size", "4"], "--image-size must be at least 8"),
])
def test_empty_paths_and_runaway_sizes_are_refused(tmp_path, capsys, flags, message):
    _refused(capsys, [*_args(tmp_path / "run"), *flags], message)
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_empty_flags(runs, capsys):
    for flag in ("--data", "--out", "--data-dir"):
        capsys.readouterr()
        assert evaluate_main(["--model", str(runs / "base"), flag, ""]) == 2
        assert f"{flag} is empty" in capsys.readouterr().out


def test_sigterm_stops_training_after_a_saved_epoch_and_the_rerun_resumes(tmp_path):
    """SIGTERM (docker stop, a batch scheduler's time limit) killed training outright: no
    "rerun to resume" line, and an exit code that did not say it was stopped."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    def cmd(epochs: int) -> list[str]:
        return [sys.executable, "-m", "train", *_args(out, "--epochs", str(epochs))]

    proc = subprocess.Popen(cmd(40), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    state = out / RESUME_DIR / STATE_FILE
    deadline = time.monotonic() + 180
    while proc.poll() is None and not state.is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    printed = " ".join(proc.communicate(timeout=120)[0].split())
    assert proc.returncode == 143, printed
    assert "interrupted (SIGTERM)" in printed and "rerun the same command" in printed
    assert "Traceback" not in printed
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 40 and not list(out.rglob("*edgeloc-tmp*"))
    rerun = subprocess.run(cmd(done + 1), cwd=root, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming {out} after epoch {done}" in " ".join(rerun.stdout.split())


def _tf_frame():
    """A frame of code in TensorFlow's package: the stop handler defers a stop there."""
    import os
    import sys

    import tensorflow as tf

    namespace = {"sys": sys}
    path = os.path.join(os.path.dirname(tf.__file__), "python", "edgeloc_test.py")
    exec(compile("def f():\n    return sys._getframe()\n", path, "exec"), namespace)
    return namespace["f"]()


def test_a_deferred_stop_ends_training_after_the_current_step(monkeypatch):
    """A stop that arrived while TensorFlow's Python was on top of the stack (nearly always
    during fit) is deferred, and waited for the epoch's end: 262 s for the demo preset's
    400-step epoch on 2 loaded cores, past any scheduler's grace period. Training's first
    callback now raises it after the current step, and the deferred re-raise is cancelled."""
    import signal

    from runtime._cli import Terminated, _ACTIVE, sigterm_stops
    from train.callbacks import StopCheck

    monkeypatch.setattr("runtime._cli.DEFER_S", 60.0)  # so the timer cannot win the race here
    with sigterm_stops():
        handler = signal.getsignal(signal.SIGTERM)
        handler(signal.SIGTERM, _tf_frame())  # deferred: nothing raised here
        recorded, waiting = _ACTIVE[-1]
        assert recorded == ["SIGTERM"] and len(waiting) == 1
        timer = waiting[0]
        with pytest.raises(Terminated):
            StopCheck().on_train_batch_end(0)
        assert not waiting and timer.finished.is_set()  # it will not raise it a second time


def test_ctrl_c_in_tensorflow_is_deferred_to_the_step_end_as_sigterm_is(monkeypatch, tmp_path,
                                                                        capsys):
    """Training took only SIGTERM: Ctrl-C was raised wherever Python was, usually inside
    TensorFlow's own frames, where an exception can come out as another error or be lost."""
    import signal

    from train.callbacks import StopCheck

    raised_at_once = []

    def run(args, console):  # the signal arrives during a step, in TensorFlow's frames
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, _tf_frame())
        except KeyboardInterrupt:
            raised_at_once.append(True)
            raise
        StopCheck().on_train_batch_end(0)

    monkeypatch.setattr("runtime._cli.DEFER_S", 60.0)
    monkeypatch.setattr("train.__main__.run", run)
    assert train_main(_args(tmp_path / "run")) == 130
    assert not raised_at_once
    assert "interrupted (Ctrl-C)" in capsys.readouterr().out


@pytest.mark.parametrize("field, value, message", [
    ("labels", ["none", "cat", "dog"], "lists 3 labels"),
    ("image_size", 48, "says image_size 48 but the model takes 32x32"),
])
def test_a_config_of_another_run_is_refused_by_evaluate(runs, tmp_path, capsys, field, value,
                                                        message):
    """train.evaluate read a copied-over config.json (another run's labels or size) as this
    model's and reported metrics for the wrong classes."""
    run = tmp_path / "run"
    shutil.copytree(runs / "base", run)
    config = json.loads((run / "config.json").read_text())
    config["model"][field] = value
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert evaluate_main(["--model", str(run), "--size", "4"]) == 2
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())
    assert message in text and "another run's config" in text and "Traceback" not in text, text


def test_evaluate_refuses_another_seed_on_the_runs_own_files(runs, tmp_path, capsys):
    """`train.evaluate --seed 5` on a run trained on files with seed 0 re-shuffled the split:
    its test images then included training images, and the score rose without a word."""
    run = tmp_path / "run"
    shutil.copytree(runs / "base", run)
    config = json.loads((run / "config.json").read_text())
    config["data"].update({"source": "csv", "data_dir": str(tmp_path), "seed": 0})
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert evaluate_main(["--model", str(run), "--seed", "5"]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed 5 splits csv" in text and "trained on (seed 0)" in text, text
