"""One orientation everywhere: an EXIF-rotated phone photo gives the same pixels in training,
calibration, export verification, the benchmark eval set and ``runtime.infer``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.images import read_image
from runtime.contract import preprocess

SIZE = 32
BOX = (8, 8, 40, 40)  # x1, y1, x2, y2 in pixels of the photo as displayed (48 wide, 96 tall)
COPIES = 12  # enough that every split of the CSV set holds the photo


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A CSV set of one phone photo stored sideways with EXIF orientation 6 (rotate 90
    clockwise to display), and the photo as displayed."""
    folder = tmp_path_factory.mktemp("exif")
    upright = np.full((96, 48, 3), 40, np.uint8)  # (H, W, 3): tall, as the user sees it
    x1, y1, x2, y2 = BOX
    upright[y1:y2, x1:x2] = (250, 200, 30)  # the object, near the top
    stored = np.ascontiguousarray(np.rot90(upright))  # (48, 96, 3): the sensor's landscape grid
    exif = Image.Exif()
    exif[0x0112] = 6
    (folder / "images").mkdir()
    rows = ["image,bbox,label"]
    for i in range(COPIES):
        name = f"images/photo{i}.jpg"
        Image.fromarray(stored).save(folder / name, format="JPEG", quality=95, exif=exif.tobytes())
        rows.append(f'{name},"[{x1}, {y1}, {x2}, {y2}]",cat')
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder, upright


def test_every_stage_sees_the_photo_upright(photos, capsys):
    from benchmarks import _evalset
    from data.catalog import open_source
    from export.calib import calibration_set
    from train.pipeline import load_example

    folder, upright = photos
    photo = folder / "images" / "photo0.jpg"
    shown = read_image(photo)  # the one reader: (96, 48, 3) upright
    assert shown.shape == upright.shape and np.abs(shown.astype(int) - upright).mean() < 4
    model_input = preprocess(shown, SIZE)  # (S, S, 3)

    # Training: the data layer's CSV source and the tf.data loader's per-example function.
    source = open_source("csv", data_dir=folder, split="all")
    sample = source[0]
    np.testing.assert_array_equal(sample.image, shown)
    np.testing.assert_allclose(sample.box, [8 / 48, 8 / 96, 40 / 48, 40 / 96], atol=1e-6)
    image, _, label = load_example(source, 0, SIZE)
    np.testing.assert_array_equal(image, model_input)
    assert label == 1

    # Calibration: a folder of images and the CSV source.
    calib = calibration_set(str(folder / "images"), config={}, image_size=SIZE, size=COPIES)
    assert all((im == model_input).all() for im in calib.images)
    calib = calibration_set("csv", config={}, data_dir=folder, image_size=SIZE, size=2)
    assert all((im == model_input).all() for im in calib.images)

    # The benchmark eval set (a CSV folder read whole).
    evalset = _evalset.read_folder(folder)
    assert len(evalset) == COPIES and all((im == shown).all() for im in evalset.images)

    # runtime.infer: the JSON line reports the displayed size.
    from runtime import infer

    assert infer.main([str(photo)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert (record["width"], record["height"]) == (48, 96)


def test_export_verification_sees_the_photo_upright(photos):
    keras = pytest.importorskip("keras")
    from export._load import LoadedModel
    from export.options import VerifyOptions
    from export.verify import holdout_set

    folder, _ = photos
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = {
        "box": keras.layers.Dense(4, activation="sigmoid", name="box")(pooled),
        "score": keras.layers.Dense(2, activation="softmax", name="score")(pooled),
    }
    config = {"model": {"labels": ["none", "cat"]}, "data": {}}
    loaded = LoadedModel(keras.Model(inputs, outputs), config, None, None)
    holdout = holdout_set(loaded, VerifyOptions(source="csv", data_dir=folder, size=COPIES))
    model_input = preprocess(read_image(folder / "images" / "photo0.jpg"), SIZE)
    assert len(holdout.pixels) >= 1 and all((p == model_input).all() for p in holdout.pixels)
    np.testing.assert_allclose(holdout.boxes[0], [8 / 48, 8 / 96, 40 / 48, 40 / 96], atol=1e-6)
