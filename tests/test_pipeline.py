"""The tf.data pipeline: output shapes and dtypes, box formats, and augmentations that move
the box with the object (geometry) or leave it alone (photometric)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.contract import box_to_pixels, preprocess
from tests.conftest import draw_box_image
from data.augment import Augment, flip_horizontal, photometric, random_window
from train.pipeline import load_example, make_dataset
from data.catalog import get_source
from data.sources import Sample


class RectSource:
    """White rectangles on black at random places and sizes; every 4th sample is empty."""

    labels = ["none", "rect"]

    def __init__(self, n: int = 16, height: int = 120, width: int = 180) -> None:
        self.n, self.height, self.width = n, height, width

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if index % 4 == 3:
            return Sample(draw_box_image(self.height, self.width, None), np.zeros(4, np.float32), 0, "empty")
        rng = np.random.default_rng(index)
        w, h = rng.integers(20, 100), rng.integers(20, 80)
        x, y = rng.integers(0, self.width - w), rng.integers(0, self.height - h)
        image = draw_box_image(self.height, self.width, (x, y, x + w, y + h))
        box = np.array([x / self.width, y / self.height, (x + w) / self.width, (y + h) / self.height], np.float32)
        return Sample(image, box, 1, f"rect{index}")


def white_bounds(image: np.ndarray) -> np.ndarray:
    """Normalized x1, y1, x2, y2 of the pixels brighter than half grey."""
    white = image.min(axis=2) > 127
    rows, cols = np.flatnonzero(white.any(1)), np.flatnonzero(white.any(0))
    h, w = white.shape
    return np.array([cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h])


def test_dataset_shapes_dtypes_and_presence() -> None:
    ds = make_dataset(RectSource(8), image_size=48, batch_size=4, augment=True, shuffle=True, seed=1)
    batches = list(ds)
    assert len(batches) == 2
    images, targets = batches[0]
    assert images.shape == (4, 48, 48, 3) and images.dtype.name == "uint8"
    assert targets["box"].shape == (4, 5) and targets["box"].dtype.name == "float32"
    assert targets["score"].shape == (4,) and targets["score"].dtype.name == "int32"
    box = np.concatenate([b[1]["box"].numpy() for b in batches])
    score = np.concatenate([b[1]["score"].numpy() for b in batches])
    assert sorted(score.tolist()) == [0, 0, 1, 1, 1, 1, 1, 1]
    assert np.all(box[:, 4] == (score > 0)) and not box[score == 0].any()


def test_plain_dataset_is_the_contract_and_xywh_matches_xyxy() -> None:
    src = RectSource(4)
    (images, xyxy), = make_dataset(src, image_size=32, batch_size=4).take(1)
    (_, xywh), = make_dataset(src, image_size=32, batch_size=4, box_format="xywh").take(1)
    for i in range(4):
        np.testing.assert_array_equal(images[i].numpy(), preprocess(src[i].image, 32))
    a, b = xyxy["box"].numpy(), xywh["box"].numpy()
    np.testing.assert_allclose(b[:, :2], a[:, :2])
    np.testing.assert_allclose(b[:, 2:4], a[:, 2:4] - a[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match="box format"):
        make_dataset(src, image_size=32, batch_size=4, box_format="cxcywh")


def test_same_seed_same_batches_new_epoch_new_augmentation() -> None:
    def first(seed: int):  # type: ignore[no-untyped-def]
        ds = make_dataset(RectSource(8), image_size=32, batch_size=8, augment=True, shuffle=True, seed=seed)
        return ds, [b[0].numpy() for b in ds]

    ds, epoch1 = first(7)
    _, again = first(7)
    np.testing.assert_array_equal(epoch1[0], again[0])
    epoch2 = [b[0].numpy() for b in ds]
    assert not np.array_equal(epoch1[0], epoch2[0])


def test_box_moving_augmentations_keep_the_box_on_the_object() -> None:
    src, aug = RectSource(16), Augment.geometry_only(fill=0, crop=1.0)
    for i in (0, 1, 2, 4, 5, 6):
        for k in range(25):
            rng = np.random.default_rng([i, k])
            image, target, label = load_example(src, i, 64, augment=aug, rng=rng)
            assert label == 1 and target[4] == 1
            # The box frames the white pixels to within a pixel of the 64 px output.
            np.testing.assert_allclose(target[:4], white_bounds(image), atol=1.5 / 64)
    # And they do move it: the boxes differ from the unaugmented ones.
    plain = load_example(src, 0, 64)[1]
    moved = [load_example(src, 0, 64, augment=aug, rng=np.random.default_rng(k))[1] for k in range(10)]
    assert any(np.abs(m - plain).max() > 0.05 for m in moved)


def test_random_window_never_cuts_the_box_and_flip_mirrors_it() -> None:
    image = draw_box_image(300, 400, (350, 10, 400, 290))  # touches the right edge
    box = np.array([350 / 400, 10 / 300, 1.0, 290 / 300], np.float32)
    aug = Augment(scale=(0.3, 1.4), outside=0.3, fill=0)
    for k in range(200):
        crop, new = random_window(np.random.default_rng(k), image, box, True, aug)
        h, w = crop.shape[:2]
        np.testing.assert_allclose(new, white_bounds(crop), atol=1e-6)
        assert (crop.min(axis=2) > 127).sum() == 50 * 280  # every white pixel is still there
    flipped, fbox = flip_horizontal(image, box, True)
    np.testing.assert_allclose(fbox, white_bounds(flipped), atol=1e-6)
    np.testing.assert_allclose(fbox, [0, 10 / 300, 50 / 400, 290 / 300], atol=1e-6)


def test_photometric_augmentations_leave_the_box_alone() -> None:
    src = get_source("cat-on-scenes", size=6, seed=0)
    aug = Augment.photometric_only(color=1.0, blur=1.0, noise=1.0)
    for i in range(6):
        plain_image, plain_box, _ = load_example(src, i, 48)
        image, box, _ = load_example(src, i, 48, augment=aug, rng=np.random.default_rng(i))
        np.testing.assert_array_equal(box, plain_box)
        assert np.abs(image.astype(int) - plain_image.astype(int)).mean() > 1.0  # pixels did change
    big = photometric(np.random.default_rng(0), np.full((600, 700, 3), 100, np.uint8), aug)
    assert big.shape == (600, 700, 3)  # larger than the cached noise table


def test_dim_scales_every_channel_by_one_exposure_gain_and_costs_no_draw_when_off() -> None:
    grey = np.full((40, 50, 3), (200, 150, 100), np.uint8)
    only_dim = Augment.photometric_only(color=0.0, blur=0.0, noise=0.0, dim=1.0)
    ratios = []
    for k in range(50):
        out = photometric(np.random.default_rng(k), grey, only_dim)
        ratio = out.reshape(-1, 3).mean(0) / (200, 150, 100)
        assert np.ptp(ratio) < 0.02, ratio  # the same gain on all three channels
        ratios.append(ratio[0])
    assert 0.29 <= min(ratios) and max(ratios) <= 0.81 and max(ratios) - min(ratios) > 0.3
    # dim=0 draws nothing: a run without it gets the same images as before it existed.
    aug = Augment.photometric_only(white_balance=1.0, noise=1.0)
    for k in range(5):
        np.testing.assert_array_equal(photometric(np.random.default_rng(k), grey, aug),
                                      photometric(np.random.default_rng(k), grey,
                                                  aug.with_overrides({"dim": 0.0})))
    with pytest.raises(ValueError, match="dim"):
        Augment(dim=1.5)


def test_negatives_stay_negative_under_augmentation() -> None:
    src = RectSource(4)
    for k in range(20):
        image, target, label = load_example(src, 3, 32, augment=Augment(), rng=np.random.default_rng(k))
        assert label == 0 and not target.any() and image.shape == (32, 32, 3)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(RectSource(4), image_size=32, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        make_dataset(RectSource(0), image_size=32, batch_size=2)
    h, w = 10, 10
    assert box_to_pixels(np.array([0, 0, 1, 1]), w, h).tolist() == [0, 0, 10, 10]
