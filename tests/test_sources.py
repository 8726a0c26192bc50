"""Synthetic sources: boxes frame their objects (pixel content), splits are disjoint, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.contract import box_to_pixels
from data import assets
from data.catalog import SOURCES, get_source
from data.synthetic import SCALE_RANGE, SyntheticSource

get_source("blobs", size=1)  # loads the registry
# The reference design's sources and the synthetic faces; the default models' cat sources
# (cat-cutouts, cat-figures) have wider scales and are tested on their own below.
SYNTHETIC = sorted(n for n, f in SOURCES.items() if isinstance(f, type) and issubclass(f, SyntheticSource)
                   and n != "cat-figures")
N = 12  # samples checked per source and split


def _pixels(sample) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    h, w = sample.image.shape[:2]
    x1, y1, x2, y2 = np.round(box_to_pixels(sample.box, w, h)).astype(int)
    return x1, y1, x2, y2


def test_registry_holds_the_four_synthetic_sources() -> None:
    assert SYNTHETIC == ["blobs", "cat-on-black", "cat-on-scenes", "faces-on-scenes"]
    with pytest.raises(ValueError, match="unknown data source 'cats'.*blobs"):
        get_source("cats")


@pytest.mark.parametrize("name", SYNTHETIC)
def test_samples_are_valid_and_deterministic(name: str) -> None:
    src = get_source(name, split="train", size=N, seed=3)
    again = get_source(name, split="train", size=N, seed=3)
    other = get_source(name, split="train", size=N, seed=4)
    assert len(src) == N and src.labels[0] == "none" and len(src.labels) == 2
    for i in range(N):
        s = src[i]
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.box.dtype == np.float32 and s.box.shape == (4,) and s.label == 1
        assert 0 <= s.box[0] < s.box[2] <= 1 and 0 <= s.box[1] < s.box[3] <= 1
        # The object's larger side, relative to the image side, is in the agreed range.
        side = max(s.box[2] - s.box[0], s.box[3] - s.box[1])
        assert SCALE_RANGE[0] - 0.03 <= side <= SCALE_RANGE[1] + 0.03, (name, i, side)
        t = again[i]
        np.testing.assert_array_equal(s.image, t.image)
        np.testing.assert_array_equal(s.box, t.box)
    assert any(not np.array_equal(src[i].box, other[i].box) for i in range(N))
    with pytest.raises(IndexError):
        src[N]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_negatives_have_no_object(name: str) -> None:
    src = get_source(name, split="train", size=60, seed=0, negatives=0.5)
    negatives = [i for i in range(60) if src.is_negative(i)]
    assert 15 <= len(negatives) <= 45
    for i in negatives[:4]:
        s = src[i]
        assert s.label == 0 and not s.box.any()
        np.testing.assert_array_equal(s.image, src.background(i)[0])  # background only


def test_blob_box_is_the_tight_box_of_the_white_pixels() -> None:
    src = get_source("blobs", split="test", size=N, seed=1)
    for i in range(N):
        s = src[i]
        white = s.image.max(axis=2) > 0
        assert np.all(s.image[white] == 255)  # white on black, nothing else
        rows, cols = np.flatnonzero(white.any(1)), np.flatnonzero(white.any(0))
        assert _pixels(s) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        x1, y1, x2, y2 = _pixels(s)
        fill = white[y1:y2, x1:x2].mean()
        assert 0.7 < fill < 0.85  # an ellipse fills pi/4 of its box


def test_cat_on_black_box_is_the_pasted_photo() -> None:
    src = get_source("cat-on-black", split="train", size=N, seed=2)
    for i in range(N):
        s = src[i]
        x1, y1, x2, y2 = _pixels(s)
        lit = s.image.max(axis=2) > 0
        inside = np.zeros_like(lit)
        inside[y1:y2, x1:x2] = True
        assert not lit[~inside].any()  # nothing outside the box
        assert lit[inside].mean() > 0.97  # and the box is filled by the photo


@pytest.mark.parametrize("name", ["cat-on-scenes", "faces-on-scenes"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_scene_box_frames_the_pasted_object(name: str, split: str) -> None:
    src = get_source(name, split=split, size=N, seed=5)
    for i in range(N):
        s = src[i]
        background, _ = src.background(i)
        changed = np.abs(s.image.astype(int) - background.astype(int)).max(axis=2) > 0
        x1, y1, x2, y2 = _pixels(s)
        inside = np.zeros_like(changed)
        inside[y1:y2, x1:x2] = True
        assert changed[inside].mean() > 0.9  # the object covers the box
        if name == "cat-on-scenes":
            assert not changed[~inside].any()  # and nothing else changed
        else:  # a portrait also shows hair and shoulders around the face box
            rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
            assert cols[0] <= x1 and rows[0] <= y1 and cols[-1] + 1 >= x2 and rows[-1] + 1 >= y2


def test_held_out_splits_use_backgrounds_and_faces_training_never_sees() -> None:
    bgs = {split: set(assets.backgrounds(split)) for split in ("train", "val", "test")}
    assert all(bgs.values())
    assert not bgs["train"] & bgs["val"] and not bgs["train"] & bgs["test"] and not bgs["val"] & bgs["test"]
    assert not set(assets.FACES["train"]) & set(assets.FACES["test"])
    assert set(assets.FACES["train"]) & set(assets.FACES["val"]) == {"astronaut"}  # the only other portrait
    assert not set(assets.backgrounds("train", faces=True)) & assets.HAS_PERSON
    for name in ("cat-on-scenes", "faces-on-scenes"):
        for split, allowed in bgs.items():
            src = get_source(name, split=split, size=30, seed=0)
            used = {src[i].name.split(":")[1].split("+")[0] for i in range(30)}
            assert used <= allowed and len(used) >= 2, (name, split, used)
    faces = {}
    for split in ("train", "test"):
        src = get_source("faces-on-scenes", split=split, size=60, seed=0)
        faces[split] = {src[i].name.split("+")[1] for i in range(60)}
        assert faces[split] <= set(assets.FACES[split])
    assert not faces["train"] & faces["test"]


def test_assets_load_locally_and_are_read_only() -> None:
    cat = assets.load_image("chelsea")
    assert cat.shape == (300, 451, 3) and cat.dtype == np.uint8 and not cat.flags.writeable
    assert assets.lfw_faces().shape == (100, 25, 25)
    crop = assets.face_crop("grace_hopper")
    x1, y1, x2, y2 = crop.box
    assert 0 <= x1 < x2 <= crop.image.shape[1] and 0 <= y1 < y2 <= crop.image.shape[0]
    with pytest.raises(ValueError, match="unknown asset"):
        assets.asset_path("lena")


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="split"):
        get_source("blobs", split="holdout")
    with pytest.raises(ValueError, match="negatives"):
        get_source("blobs", negatives=1.5)
    with pytest.raises(ValueError, match="size"):
        get_source("blobs", size=0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cat_figures_change_only_the_pixels_inside_their_box(split: str) -> None:
    src = get_source("cat-figures", split=split, size=40, seed=1, negatives=0.2)
    for i in range(40):
        s = src[i]
        background, _ = src.background(i)
        changed = np.abs(s.image.astype(int) - background.astype(int)).max(axis=2) > 0
        if s.label == 0:
            assert not changed.any() and not s.box.any()
            continue
        x1, y1, x2, y2 = _pixels(s)
        assert changed[y1:y2, x1:x2].mean() > 0.3  # the figure is there (a silhouette, not a box)
        outside = changed.copy()
        outside[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = False
        assert not outside.any(), i


def test_cat_cutouts_are_deterministic_and_use_the_split_scenes() -> None:
    train = get_source("cat-cutouts", split="train", size=30, seed=2, negatives=0.2)
    test = get_source("cat-cutouts", split="test", size=30, seed=2, negatives=0.2)
    again = get_source("cat-cutouts", split="train", size=30, seed=2, negatives=0.2)
    names = {split: {src[i].name.split("@scene:")[-1] for i in range(30)} for split, src in (("train", train), ("test", test))}
    assert names["train"] <= set(assets.BACKGROUNDS["train"])
    assert names["test"] <= set(assets.BACKGROUNDS["test"])
    sides = []
    for i in range(30):
        s = train[i]
        np.testing.assert_array_equal(s.image, again[i].image)
        if s.label:
            assert 0 <= s.box[0] < s.box[2] <= 1 and 0 <= s.box[1] < s.box[3] <= 1
            sides.append(max(s.box[2] - s.box[0], s.box[3] - s.box[1]))
    assert min(sides) < 0.4 and max(sides) > 0.8  # small and frame-filling cats alike
    assert any(train[i].label == 0 for i in range(30))
