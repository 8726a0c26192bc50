"""Model builder: every registered backbone builds, outputs follow the contract, runs reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.contract import from_xyxy, to_xyxy
from train.config import RunConfig, load_run, resolve_config, save_config
from train.losses import box_loss
from train.metrics import MeanBoxIoU
from train.model import BACKBONES, INITIAL_BOX, VECTORIZERS, ModelSpec, build_model


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_with_contract_outputs(backbone):
    spec = ModelSpec(backbone=backbone, image_size=32, labels=("none", "cat", "dog"), alpha=0.35
                     if backbone.startswith("mobilenet") else 1.0, head_units=16)
    model = build_model(spec)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = model(x, training=False)
    box, score = np.asarray(out["box"]), np.asarray(out["score"])
    assert box.shape == (2, 4) and score.shape == (2, 3)
    assert np.all((box >= 0) & (box <= 1))
    np.testing.assert_allclose(score.sum(-1), 1.0, rtol=1e-5)
    assert model.inputs[0].name.startswith("image")


@pytest.mark.parametrize("vectorizer", sorted(VECTORIZERS))
@pytest.mark.parametrize("box_format", ["xyxy", "xywh"])
def test_vectorizers_and_initial_box(vectorizer, box_format):
    spec = ModelSpec(backbone="small_cnn", image_size=64, vectorizer=vectorizer, head_units=0,
                     box_format=box_format)
    model = build_model(spec)
    x = np.full((2, 64, 64, 3), 100, np.uint8)
    assert np.asarray(model(x)["box"]).shape == (2, 4)
    # The untrained head starts from the centred half-size box, in the model's box format.
    bias = 1 / (1 + np.exp(-model.get_layer("box").bias.numpy()))
    np.testing.assert_allclose(to_xyxy(bias, box_format), INITIAL_BOX, atol=1e-6)
    if vectorizer == "attention":
        assert not model.get_layer("soft_argmax").trainable


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="small_cnn"):
        build_model(ModelSpec(backbone="nope"))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--weights none"):
        build_model(ModelSpec(backbone="small_cnn", image_size=32, weights=str(tmp_path / "x.h5")))


def test_box_formats_give_the_same_loss_and_iou():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 0.5, (8, 2)).astype(np.float32)
    true = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (8, 2)).astype(np.float32)], 1)
    pred = np.clip(true + rng.normal(0, 0.05, true.shape), 0, 1).astype(np.float32)
    present = np.ones((8, 1), np.float32)
    values = {}
    for fmt in ("xyxy", "xywh"):
        y = np.concatenate([from_xyxy(true, fmt), present], 1)
        p = from_xyxy(pred, fmt)
        np.testing.assert_allclose(to_xyxy(p, fmt), pred, atol=1e-6)
        metric = MeanBoxIoU(fmt)
        metric.update_state(y, p)
        values[fmt] = (float(box_loss("giou", fmt)(y, p)), float(metric.result()))
    np.testing.assert_allclose(values["xyxy"], values["xywh"], rtol=1e-5)


def test_load_run_from_dir_and_keras_file(tmp_path):
    config = resolve_config(backbone="small_cnn", image_size=32, box_format="xywh")
    config.model.labels = ("none", "cat")
    config.model.head_units = 8
    model = build_model(config.model)
    model.save(tmp_path / "model.keras")
    save_config(config, tmp_path)
    x = np.full((1, 32, 32, 3), 128, np.uint8)
    for path in (tmp_path, tmp_path / "model.keras"):
        loaded, cfg = load_run(path)
        np.testing.assert_allclose(np.asarray(loaded(x)["box"]), np.asarray(model(x)["box"]),
                                   atol=1e-6)
        assert cfg["model"]["box_format"] == "xywh" and cfg["model"]["labels"] == ["none", "cat"]
    assert RunConfig.from_dict(json.loads((tmp_path / "config.json").read_text())).model == config.model
    (tmp_path / "config.json").unlink()  # a bare .keras file still loads, with generic labels
    _, cfg = load_run(tmp_path / "model.keras")
    assert cfg["model"]["image_size"] == 32 and cfg["model"]["labels"] == ["none", "class1"]
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_run(tmp_path / "missing")


def test_presets_and_flags_resolve_in_order():
    demo = resolve_config("demo")
    assert demo.data.source == "cat-on-scenes" and demo.model.weights == "none"
    over = resolve_config("demo", image_size=64, lr=1e-3, epochs=None)
    assert over.model.image_size == 64 and over.optimizer.learning_rate == 1e-3
    assert over.training.epochs == demo.training.epochs
    default = resolve_config()
    assert default.optimizer.learning_rate == 3e-4 and default.optimizer.decay_rate == 0.8
    assert default.optimizer.decay_steps == 3600 and default.optimizer.staircase
    with pytest.raises(ValueError, match="demo"):
        resolve_config("nope")
    # --aug adds to the real preset's dim light; a key given again wins.
    from data.augment import get_augment

    def augment(**flags):
        c = resolve_config("real", **flags)
        return get_augment(c.data.augment, c.data.augment_overrides)

    assert augment().dim == 0.3 and augment().rotate == 0.3  # the camera profile, plus dim
    both = augment(aug="rotate=0.5")
    assert both.dim == 0.3 and both.rotate == 0.5
    assert augment(aug="dim=0").dim == 0.0
    assert augment(augment="none") is None  # --no-augment still turns it all off
    with pytest.raises(ValueError, match="need a profile other than 'none'"):
        augment(augment="none", aug="dim=0.5")
    assert resolve_config("demo", aug="dim=0.2").data.augment_overrides == "dim=0.2"
