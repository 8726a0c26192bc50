"""Training under tf.distribute: strategies by name, TF_CONFIG errors, mixed precision that
keeps the float32 contract, the warm-up schedule, and (slow) mirrored and multi-worker runs
on logical CPU devices / local processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from train import distribute
from train.__main__ import main as train_main
from train.callbacks import save_model_atomic
from train.config import resolve_config
from train.fit import WarmUp
from train.model import ModelSpec, PixelScale, build_model

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data", "blobs", "--backbone", "small_cnn", "--image-size", "32", "--head-units", "16",
        "--batch-size", "16", "--train-size", "64", "--no-progress"]


def test_registry_lists_valid_names_and_multiworker_needs_tf_config(monkeypatch, tmp_path, capsys):
    with pytest.raises(ValueError, match="valid: auto, one, mirrored, multiworker"):
        distribute.make_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert train_main([*TINY, "--strategy", "multiworker", "--out", str(tmp_path / "run")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "needs the TF_CONFIG variable" in out and "Traceback" not in out
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(ValueError, match="index 3 is outside the 1 worker"):
        distribute.read_tf_config()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not a valid cluster description"):
        distribute.read_tf_config()
    assert not (tmp_path / "run" / "config.json").exists()


def test_mixed_precision_model_has_float32_outputs_and_saves_the_float32_twin(tmp_path):
    spec = ModelSpec(backbone="small_cnn", image_size=32, vectorizer="attention", head_units=16)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    distribute.set_precision(True)
    try:
        mixed = build_model(spec)
    finally:
        distribute.set_precision(False)
    scale = next(la for la in mixed.layers if isinstance(la, PixelScale))
    assert scale.compute_dtype == "float16"  # it is mixed inside
    out = mixed(x)
    assert {k: v.dtype.name for k, v in out.items()} == {"box": "float32", "score": "float32"}
    save_model_atomic(mixed, tmp_path / "model.keras")
    saved = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert all("mixed" not in str(layer.dtype_policy) for layer in distribute._layers(saved))
    # The saved file is exactly what a float32 run saves (same layers, same config), so
    # every export sees the float32 contract; its outputs match the mixed model's.
    plain = build_model(spec)
    layers = lambda m: [(type(la).__name__, la.dtype_policy.name) for la in distribute._layers(m)]  # noqa: E731
    assert layers(saved) == layers(plain)
    assert [tuple(w.shape) for w in saved.weights] == [tuple(w.shape) for w in plain.weights]
    got = saved(x)
    np.testing.assert_allclose(got["box"], out["box"], atol=2e-2)
    np.testing.assert_allclose(got["score"], out["score"], atol=2e-2)
    assert not list(tmp_path.glob(".tmp*"))


def test_warmup_ramps_linearly_then_follows_the_schedule():
    base = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.5)
    lr = WarmUp(base, 4)
    got = [float(lr(step)) for step in (0, 1, 3, 4, 10)]
    np.testing.assert_allclose(got, [2.5e-4, 1e-3 * 0.5 ** 0.1 * 0.5, 1e-3 * 0.5 ** 0.3,
                                     1e-3 * 0.5 ** 0.4, 5e-4],
                               rtol=1e-5)
    again = WarmUp.from_config(lr.get_config())
    assert float(again(2)) == pytest.approx(float(lr(2)))
    config = resolve_config(warmup_steps=100, strategy="mirrored", input_pipeline="tf",
                            mixed_precision=False)
    assert (config.optimizer.warmup_steps, config.training.strategy) == (100, "mirrored")


MIRRORED = textwrap.dedent("""
    import io, json, sys
    from train.distribute import split_cpu
    split_cpu(2)  # before TensorFlow initializes its devices
    import keras
    from rich.console import Console
    from train.config import resolve_config
    from train.fit import train

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.iterations = int(self.model.optimizer.iterations.numpy())
            self.replicas = self.model.distribute_strategy.num_replicas_in_sync

    def config(strategy, pipeline="python"):
        c = resolve_config(data="blobs", backbone="small_cnn", image_size=32, epochs=3,
                           steps_per_epoch=12, batch_size=16, train_size=192, lr=3e-3,
                           head_units=32, strategy=strategy, input_pipeline=pipeline)
        c.data.val_size = c.data.test_size = 64
        return c

    out, console = {}, Console(file=io.StringIO())
    try:
        train(config("mirrored"), sys.argv[1] + "/mirrored", console=console, callbacks=[Stop()])
    except KeyboardInterrupt:
        pass
    start = Start()
    mirrored = train(config("mirrored"), sys.argv[1] + "/mirrored", console=console, callbacks=[start])
    out["resumed_at"], out["replicas"] = start.iterations, start.replicas
    out["mirrored"] = mirrored["test"]["mean_iou"]
    out["one"] = train(config("one"), sys.argv[1] + "/one", console=console)["test"]["mean_iou"]
    tf_run = config("mirrored", "tf")
    tf_run.training.epochs = 1
    out["tf"] = train(tf_run, sys.argv[1] + "/tf", console=console)["test"]["mean_iou"]
    print(json.dumps(out))
""")


def _run(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_resumes_and_matches_one_device(tmp_path):
    proc = _run(MIRRORED, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["resumed_at"] == 12  # one finished epoch of 12 steps: optimizer state restored
    history = json.loads((tmp_path / "mirrored" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    # Same global batch, same steps: the same accuracy within the noise of a tiny run
    # (batch-norm statistics are per replica, 8 images each instead of 16).
    assert abs(out["mirrored"] - out["one"]) < 0.08, out
    assert 0.0 < out["tf"] <= 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_local_processes_train_and_only_the_chief_writes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    run = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--steps-per-epoch", "3", "--strategy", "multiworker",
            "--out", str(run)]
    code = "import sys; from train.__main__ import main; sys.exit(main(sys.argv[1:]))"
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    chief, worker = outputs[0][0], outputs[1][0]
    assert "2 replica(s)" in chief and "test mean IoU" in chief
    assert "worker finished 2 epochs" in worker
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    # Both workers logged the same (all-reduced) losses.
    losses = [[line.split("loss ")[1].split()[0] for line in out.splitlines() if line.startswith("epoch")]
               for out, _ in outputs]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.csv", "history.json",
                                                     "metrics.json", "model.keras", "predictions.png",
                                                     "resume"]


def test_runs_resume_across_placement_changes_and_new_fields(tmp_path):
    from train.config import save_config
    from train.fit import check_same_run

    config = resolve_config(data="blobs", strategy="one", input_pipeline="python")
    save_config(config, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["optimizer"]["warmup_steps"]  # a run started before the field existed
    saved["data"]["augment"] = True  # ... and before the augment profiles (True was "basic")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    moved = resolve_config(data="blobs", strategy="mirrored", input_pipeline="tf",
                           mixed_precision=True, cache_dir=str(tmp_path))
    check_same_run(tmp_path, moved)  # another machine may resume it
    with pytest.raises(ValueError, match="optimizer.warmup_steps"):
        check_same_run(tmp_path, resolve_config(data="blobs", warmup_steps=10))
    with pytest.raises(ValueError, match="data.augment"):
        check_same_run(tmp_path, resolve_config(data="blobs", augment="camera"))
    check_same_run(tmp_path, resolve_config(data="blobs", aug="dim=0"))  # the same settings
    # A real-preset run from before the preset's dim light resumes with --aug dim=0.
    old = resolve_config("real", data="blobs", aug="dim=0")
    old.data.augment_overrides = None
    save_config(old, tmp_path)
    with pytest.raises(ValueError, match="data.augment"):
        check_same_run(tmp_path, resolve_config("real", data="blobs"))
    check_same_run(tmp_path, resolve_config("real", data="blobs", aug="dim=0"))
