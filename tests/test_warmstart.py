"""Warm starts (--init, --freeze-backbone), the real-data preset, and the checkpoint written
after the resume state."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pytest
from rich.console import Console

from runtime.errors import UserError
from tests.test_paste import green_dataset
from tests.test_train import STEPS, tiny_config
from train.config import resolve_config
from train.fit import RESUME_DIR, STATE_FILE, train
from train.warmstart import backbone_of

QUIET = Console(file=io.StringIO())


class Weights(keras.callbacks.Callback):
    """Backbone weights at the start of training and after each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.start: list[np.ndarray] = []
        self.after: list[list[np.ndarray]] = []

    def on_train_begin(self, logs=None):  # type: ignore[no-untyped-def]
        self.start = [w.numpy().copy() for w in backbone_of(self.model).weights]

    def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        self.after.append([w.numpy().copy() for w in backbone_of(self.model).weights])


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("source")
    train(tiny_config(epochs=1), run, console=QUIET)
    return run


def test_init_copies_weights_and_reinitializes_a_new_label_set(
    source_run: Path, tmp_path: Path, write_image: Callable[..., Path]
) -> None:
    csv = green_dataset(tmp_path / "data", write_image)  # labels none, frog, leaf: 3, not 2
    out = io.StringIO()
    probe = Weights()
    config = tiny_config(data="csv", data_dir=str(csv), epochs=2, init=str(source_run),
                         freeze_backbone=1)
    train(config, tmp_path / "run", console=Console(file=out, width=200), callbacks=[probe])
    printed = out.getvalue()
    assert "warm start from" in printed and "score layer re-initialized: 2 labels there, 3 here" in printed
    trained = keras.models.load_model(source_run / "model.keras", compile=False)
    assert same(probe.start, [w.numpy() for w in backbone_of(trained).weights])
    # --freeze-backbone 1: epoch 1 leaves the backbone alone, epoch 2 trains it.
    assert same(probe.after[0], probe.start)
    assert not same(probe.after[1], probe.start)


def test_init_refuses_another_architecture(source_run: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"different architecture \(image_size 32 there, 48 here"):
        train(tiny_config(image_size=48, init=str(source_run)), tmp_path, console=QUIET)
    with pytest.raises(UserError, match="no trained model"):
        train(tiny_config(init=str(tmp_path / "nothing")), tmp_path / "b", console=QUIET)


def test_real_preset_trains_on_pasted_objects(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    csv = green_dataset(tmp_path / "data", write_image)
    # 6 short epochs: after 4 the loss had fallen 9-12% depending on the augmentation draws
    # (dim light changed them), too close to the 10% bar below; after 6, 15%.
    config = resolve_config("real", data="csv", data_dir=str(csv), image_size=64, alpha=0.5,
                            head_units=32, epochs=6, steps_per_epoch=STEPS, batch_size=16,
                            train_size=192, lr=3e-3)
    assert config.data.paste > 0 and config.data.augment == "camera"
    train(config, tmp_path / "run", console=QUIET)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]
    assert history[-1]["box_iou"] > history[0]["box_iou"] + 0.05


def test_a_kill_after_the_state_but_before_the_model_file_loses_nothing(
    source_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config(epochs=1, checkpoint="last")
    train(config, run, console=QUIET)
    weights = keras.models.load_model(run / "model.keras", compile=False).get_weights()
    # As if killed right after the resume state of the last epoch: an older model file.
    shutil.copy(source_run / "model.keras", run / "model.keras")
    state = json.loads((run / RESUME_DIR / STATE_FILE).read_text())
    state["finished"] = False
    (run / RESUME_DIR / STATE_FILE).write_text(json.dumps(state))
    train(config, run, console=QUIET)
    again = keras.models.load_model(run / "model.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, again))
    assert json.loads((run / "history.json").read_text())[-1]["epoch"] == 1  # no epoch re-run
