"""The tf input pipeline against the numpy reference: the same parameters give the same boxes
(exactly) and the same pixels (within rounding); its own draws keep the reference's
probabilities and box semantics; its datasets match the python pipeline's structure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from data.augment import AUGMENTS, Augment, random_window
from data.augment_params import apply_params as numpy_apply
from data.augment_params import identity_params
from runtime.contract import preprocess
from tests.test_pipeline import RectSource, white_bounds
from train.tf_augment import apply_params as tf_apply
from train.tf_augment import draw_geometry, draw_params, draw_photometric, move_boxes, unsupported
from train.tf_pipeline import decoded_store, make_tf_dataset, resolve_pipeline

EVERYTHING = AUGMENTS["camera"].with_overrides({"crop": 1.0, "rotate": 0.5, "color": 0.8,
                                                "gamma": 0.5, "white_balance": 0.5, "blur": 0.5,
                                                "noise": 0.5, "jpeg": 0.3, "grayscale": 0.2,
                                                "dim": 0.4})


def both(sample, params, size=64):
    """(numpy image, numpy box, tf image, tf box) for one sample and one parameter dict."""
    present = sample.label > 0
    ni, nb = numpy_apply(sample.image, sample.box, present, params, size)
    ti, tb = tf_apply(tf.constant(sample.image), tf.constant(sample.box), tf.constant(present),
                      {k: tf.constant(v) for k, v in params.items()}, size)
    return ni, nb, ti.numpy(), tb.numpy()


def drawn(aug, sample, seed, size=64):
    h, w = sample.image.shape[:2]
    p = draw_params(tf.constant(seed, tf.int64), aug, h, w, sample.box, tf.constant(sample.label > 0), size)
    return {k: v.numpy() for k, v in p.items()}


def test_same_parameters_same_boxes_exactly_and_same_pixels_within_rounding():
    src = RectSource(16)
    diffs, jpeg_diffs = [], []
    for i in range(12):
        for k in range(6):
            params = drawn(EVERYTHING, src[i], [i, k])
            ni, nb, ti, tb = both(src[i], params)
            if src[i].label:
                np.testing.assert_array_equal(tb, nb)  # bit for bit
            assert ti.shape == ni.shape == (64, 64, 3) and ti.dtype == np.uint8
            diff = np.abs(ti.astype(int) - ni.astype(int)).mean()
            (jpeg_diffs if params["jpeg"] else diffs).append(diff)
    # Interpolation and colour conversions round differently by a grey level here and
    # there; the two libjpeg builds' IDCTs differ a little more.
    assert np.mean(diffs) < 0.5 and max(diffs) < 1.5, (np.mean(diffs), max(diffs))
    assert np.mean(jpeg_diffs) < 2.5, np.mean(jpeg_diffs)


def test_geometry_keeps_the_white_rectangle_inside_the_tf_box():
    src, aug = RectSource(16), Augment.geometry_only(fill=0, crop=1.0, rotate=0.0)
    for i in (0, 1, 2, 4, 5, 6):
        for k in range(10):
            _, nb, ti, tb = both(src[i], drawn(aug, src[i], [i, k]))
            np.testing.assert_array_equal(tb, nb)
            np.testing.assert_allclose(tb, white_bounds(ti), atol=1.5 / 64)
    # Mirror padding (BORDER_REFLECT_101) and rotation: pixels agree with OpenCV's, which
    # warps at 1/32-pixel positions (so a hard edge may differ by 255 / 32 grey levels).
    mirror = Augment.geometry_only(fill=None, crop=1.0, outside=0.4, rotate=1.0)
    for k in range(10):
        ni, _, ti, _ = both(src[1], drawn(mirror, src[1], [1, k]))
        diff = np.abs(ti.astype(int) - ni.astype(int))
        assert diff.max() <= 10 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_identity_parameters_are_the_contract_resize():
    sample = RectSource(4)[1]
    h, w = sample.image.shape[:2]
    ni, nb, ti, tb = both(sample, identity_params(h, w), size=48)
    np.testing.assert_array_equal(ni, preprocess(sample.image, 48))
    np.testing.assert_array_equal(nb, sample.box)
    np.testing.assert_array_equal(tb, sample.box)
    assert np.abs(ti.astype(int) - ni.astype(int)).max() <= 1  # fixed-point vs float bilinear


def test_tf_draws_follow_the_reference_probabilities_and_keep_the_box():
    aug = Augment(crop=0.7, flip=0.5, rotate=0.3, color=0.8, blur=0.2, noise=0.4, jpeg=0.3,
                  dim=0.25)
    n, h, w = 4000, 120, 180
    boxes = np.tile(np.array([[0.3, 0.2, 0.6, 0.7]], np.float32), (n, 1))
    present = tf.ones(n, tf.bool)
    geo = draw_geometry(tf.constant([1, 2], tf.int64), aug, tf.fill([n], h), tf.fill([n], w), boxes, present)
    photo = draw_photometric(tf.constant([3, 4], tf.int64), aug, n, 64)
    window = geo["window"].numpy()
    cropped = np.any(window != [0, 0, w, h], axis=1)
    rotated = np.any(geo["rotation"].numpy() != np.eye(2, 3), axis=(1, 2))
    for rate, want in [(cropped.mean(), 0.7), (rotated.mean(), 0.3), (photo["flip"].numpy().mean(), 0.5),
                       (photo["color"].numpy().mean(), 0.8), ((photo["noise"].numpy() > 0).mean(), 0.4),
                       ((photo["jpeg"].numpy() > 0).mean(), 0.3),
                       ((photo["gains"].numpy()[:, 0] != 1).mean(), 0.25)]:
        assert abs(rate - want) < 0.03, (rate, want)
    # Every window keeps the whole (rotated) box and stays within `outside` of the image.
    moved = move_boxes(boxes, present, tf.fill([n], h), tf.fill([n], w), geo).numpy()
    assert moved.min() >= 0 and moved.max() <= 1
    plain = window[cropped & ~rotated]
    assert (plain[:, :2] <= [0.3 * w, 0.2 * h]).all() and (plain[:, 2:] >= [0.6 * w, 0.7 * h]).all()
    assert window[:, 0].min() >= -aug.outside * w - 1 and window[:, 2].max() <= w * (1 + aug.outside) + 1
    # Window sides follow the reference's distribution (data.augment.random_window).
    image = np.zeros((h, w, 3), np.uint8)
    ref = [random_window(np.random.default_rng(k), image, boxes[0], True, aug)[0].shape[1]
           for k in range(2000)]
    ours = (window[:, 2] - window[:, 0])[cropped & ~rotated]
    assert abs(np.mean(ours) - np.mean(ref)) < 0.03 * np.mean(ref)


def test_tf_dataset_structure_boxes_and_negatives():
    src = RectSource(8)
    ds = make_tf_dataset(src, image_size=48, batch_size=4, augment=Augment.geometry_only(fill=0),
                         shuffle=True, seed=1)
    batches = list(ds)
    assert len(batches) == 2
    images, targets = batches[0]
    assert images.shape == (4, 48, 48, 3) and images.dtype == tf.uint8
    assert targets["box"].shape == (4, 5) and targets["score"].dtype == tf.int32
    for images, targets in batches:
        for image, box, score in zip(images.numpy(), targets["box"].numpy(), targets["score"].numpy()):
            if score == 0:
                assert not box.any()
            else:
                assert box[4] == 1
                np.testing.assert_allclose(box[:4], white_bounds(image), atol=1.5 / 48)
    # Without augmentation: the contract's pixels (to a grey level) and xywh boxes.
    (plain, xywh), = make_tf_dataset(src, image_size=32, batch_size=4, box_format="xywh").take(1)
    for i in range(4):
        assert np.abs(plain[i].numpy().astype(int) - preprocess(src[i].image, 32).astype(int)).max() <= 1
    b = src[0].box
    np.testing.assert_allclose(xywh["box"].numpy()[0], [b[0], b[1], b[2] - b[0], b[3] - b[1], 1], atol=1e-6)


def test_same_seed_same_batches_and_a_new_epoch_draws_anew():
    def epoch_images(ds):
        return np.concatenate([b[0].numpy() for b in ds])

    first = make_tf_dataset(RectSource(8), image_size=32, batch_size=8, augment=True, shuffle=True, seed=7)
    again = make_tf_dataset(RectSource(8), image_size=32, batch_size=8, augment=True, shuffle=True, seed=7)
    one = epoch_images(first)
    np.testing.assert_array_equal(one, epoch_images(again))
    assert not np.array_equal(one, epoch_images(first))


class Counting(RectSource):
    def __init__(self, n):
        super().__init__(n)
        self.reads = 0

    def __getitem__(self, index):
        self.reads += 1
        return super().__getitem__(index)


def test_disk_store_is_written_once_and_reads_back_the_same_pixels(tmp_path):
    src = Counting(6)
    memory = decoded_store(src)
    disk = decoded_store(src, cache_dir=tmp_path, key="rects")
    reads = src.reads
    again = decoded_store(src, cache_dir=tmp_path, key="rects")
    assert src.reads - reads <= 16  # only the size probe: nothing decoded again
    assert memory.where == "memory" and again.where == disk.where == str(tmp_path / "rects")
    for i in range(len(src)):
        np.testing.assert_array_equal(again.read(tf.constant(i, tf.int64)).numpy(), src[i].image)
        np.testing.assert_array_equal(memory.read(tf.constant(i, tf.int64)).numpy(), src[i].image)
    np.testing.assert_array_equal(again.labels, [s.label for s in map(src.__getitem__, range(6))])
    assert not list(tmp_path.glob(".rects-*"))  # no half-written store left behind
    # Too large for the memory budget: a temporary disk store for this run.
    assert decoded_store(src, budget=0).where != "memory"


def test_pipeline_choice_and_unsupported_augmentations(caplog):
    assert resolve_pipeline("auto", on_gpu=False, augment=Augment()) == "python"
    assert resolve_pipeline("auto", on_gpu=True, augment=Augment()) == "tf"
    assert resolve_pipeline("tf", on_gpu=False, augment=None) == "tf"

    @dataclasses.dataclass(frozen=True)
    class Later(Augment):  # a field a later data.augment may add
        mosaic: float = 0.5

    assert unsupported(Later()) == ["mosaic"] and unsupported(Later(mosaic=0)) == []
    with pytest.raises(ValueError, match="does not implement the augmentation.*mosaic"):
        resolve_pipeline("tf", on_gpu=True, augment=Later())
    assert resolve_pipeline("auto", on_gpu=True, augment=Later()) == "python"
    assert "mosaic" in caplog.text
    with pytest.raises(ValueError, match="valid: auto, python, tf"):
        resolve_pipeline("fast", on_gpu=False, augment=None)
