"""The preprocessing and I/O contract shared by training, export and runtime."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from runtime import contract
from runtime.contract import Contract
from runtime.errors import UserError


def test_preprocess_resizes_and_keeps_rgb_order():
    image = np.zeros((120, 200, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    out = contract.preprocess(image, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_preprocess_bgr_flag_matches_cvtcolor_then_resize():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    expected = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (48, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(contract.preprocess(bgr, (32, 48), bgr=True), expected)


def test_preprocess_accepts_gray_and_alpha():
    assert contract.preprocess(np.full((10, 10), 7, np.uint8), 8).shape == (8, 8, 3)
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 255
    assert (contract.preprocess(rgba, 8) == 0).all()
    gray = np.random.default_rng(0).integers(0, 256, (10, 12), dtype=np.uint8)
    np.testing.assert_array_equal(contract.preprocess(gray[:, :, None], 8),
                                  contract.preprocess(gray, 8))  # (h, w, 1) is gray too


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((10, 10, 3), np.float32), r"uint8.*astype\(np.uint8\)"),
        (np.zeros((10, 10, 3), np.uint16), r"uint8.*image >> 8"),
        (np.zeros((10, 10, 3), bool), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((1, 10, 10, 3), np.uint8), r"image\[0\].*predict_batch"),
        (np.zeros((0, 10, 3), np.uint8), "non-empty"),
        ("image.jpg", "numpy"),
        ([[[0, 0, 0]]], r"np.asarray"),
    ],
)
def test_preprocess_rejects_bad_images(bad, message):
    with pytest.raises(UserError, match=message):  # one line naming the fix, no cast or crash
        contract.preprocess(bad, 8)


def test_box_format_round_trip():
    xyxy = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    xywh = contract.from_xyxy(xyxy, "xywh")
    np.testing.assert_allclose(xywh, [[0.1, 0.2, 0.4, 0.7], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(contract.to_xyxy(xywh, "xywh"), xyxy)
    assert contract.to_xyxy(xyxy, "xyxy") is xyxy
    with pytest.raises(ValueError, match="xyxy, xywh"):
        contract.to_xyxy(xyxy, "cxcywh")


def test_box_to_pixels_clips_and_orders():
    np.testing.assert_allclose(contract.box_to_pixels([0.5, 0.75, 0.25, 1.2], 200, 100), [50, 75, 100, 100])


def test_decode_box_converts_clips_and_orders_in_plain_floats():
    norm, px = contract.decode_box(np.array([0.1, 0.2, 0.5, 0.9], np.float32), "xywh", 200, 100)
    np.testing.assert_allclose(norm, [0.1, 0.2, 0.6, 1.0], atol=1e-6)  # y2 = 1.1 clipped
    np.testing.assert_allclose(px, [20, 20, 120, 100], atol=1e-4)
    assert all(type(v) is float for v in norm + px)
    _, px = contract.decode_box(np.array([0, 0, 1, 2]), "xyxy", 10, 10)  # an int array
    assert px == (0.0, 0.0, 10.0, 10.0) and all(type(v) is float for v in px)
    _, px = contract.decode_box([0.8, -0.2, 0.3, 0.5], "xyxy", 10, 10)  # swapped x, negative y
    assert px == pytest.approx((3.0, 0.0, 8.0, 5.0))
    with pytest.raises(ValueError, match="xyxy, xywh"):
        contract.decode_box([0, 0, 1, 1], "cxcywh", 10, 10)


def test_box_iou_hand_computed_and_degenerate():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [0, 0, 0, 1], [2, 2, 3, 3]], float)
    np.testing.assert_allclose(contract.box_iou(a, b), [1 / 7, 1.0, 0.0, 0.0])


def test_decode_score_skips_no_object_class():
    labels = ["none", "cat", "dog"]
    assert contract.decode_score(np.array([0.5, 0.1, 0.4]), labels) == ("dog", pytest.approx(0.4))
    assert contract.decode_score([0.2, 0.4, 0.4], labels) == ("cat", pytest.approx(0.4))  # tie: first
    with pytest.raises(ValueError, match="3 labels"):
        contract.decode_score(np.array([0.5, 0.5]), labels)


def test_contract_json_round_trip_and_validation():
    c = Contract(input_size=(96, 128), labels=["none", "cat"], box_format="xywh", precision="int8",
                 calibration={"source": "cat-on-scenes", "size": 200})
    back = Contract.from_json(c.to_json())
    assert back == c and back.input_size == (96, 128)
    with pytest.raises(ValueError, match="start with 'none'"):
        Contract(input_size=(8, 8), labels=["cat"])
    with pytest.raises(ValueError, match="not valid JSON"):
        Contract.from_json("{broken")
    with pytest.raises(ValueError, match="newer"):
        Contract.from_json(json.dumps({**json.loads(c.to_json()), "version": 99}))
    with pytest.raises(ValueError, match="incomplete"):
        Contract.from_json(json.dumps({"labels": ["none", "cat"]}))


def _flatbuffer_with_metadata(entries: dict[str, bytes]) -> bytes:
    """Build a minimal TFLite-schema Model with buffers and metadata, using flatbuffers."""
    import flatbuffers

    b = flatbuffers.Builder(256)
    buffers = []
    for payload in [b""] + list(entries.values()):
        vec = b.CreateByteVector(payload)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        buffers.append(b.EndObject())
    metas = []
    for i, name in enumerate(entries, start=1):
        s = b.CreateString(name)
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(0, s, 0)
        b.PrependUint32Slot(1, i, 0)
        metas.append(b.EndObject())

    def vector(items):
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    buf_vec, meta_vec = vector(buffers), vector(metas)
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(4, buf_vec, 0)
    b.PrependUOffsetTRelativeSlot(6, meta_vec, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_read_tflite_metadata_finds_entries():
    payload = Contract(input_size=(8, 8), labels=["none", "cat"]).to_json().encode()
    data = _flatbuffer_with_metadata({"min_runtime_version": b"1.5.0", contract.CONTRACT_KEY: payload})
    meta = contract.read_tflite_metadata(data)
    assert meta[contract.CONTRACT_KEY] == payload and meta["min_runtime_version"] == b"1.5.0"
    assert contract.read_tflite_metadata(_flatbuffer_with_metadata({})) == {}


def test_read_tflite_metadata_rejects_garbage():
    with pytest.raises(ValueError, match="TFLite"):
        contract.read_tflite_metadata(b"\xff" * 64)
    with pytest.raises(ValueError, match="too short"):
        contract.read_tflite_metadata(b"abc")
