"""Backends and model files a user may hand the runtime: models from other tools, odd
structures, contracts that disagree, damaged files. Each must be refused in one line or run
right, never answer wrongly. The models are built by hand with ``onnx.helper`` (no
TensorFlow): a constant box and score, so the right answer is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import Localizer
from runtime._tensors import InputConverter, TensorInfo
from runtime.contract import Contract
from runtime.errors import ModelError, UserError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

BOX = [0.1, 0.2, 0.6, 0.9]
SCORE = [0.12, 0.88]
CONTRACT = {"input_size": [32, 32], "labels": ["none", "cat"], "version": 1}


def onnx_model(
    path: Path,
    *,
    in_shape: tuple = (1, 32, 32, 3),
    outs: tuple = (("box", (1, 4), BOX), ("score", (1, 2), SCORE)),
    out_type: int = TensorProto.FLOAT,
    contract: dict | None = CONTRACT,
) -> Path:
    """A one-input ONNX localizer whose outputs are constants (plus 0 x the input's mean)."""
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outputs = []
    for name, shape, values in outs:
        fixed = [s if isinstance(s, int) else 1 for s in shape]  # a named (dynamic) axis: 1
        const = np.array(values, np.float32).reshape(fixed)
        inits.append(numpy_helper.from_array(const, f"{name}_c"))
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [f"{name}_f"]))
        nodes.append(helper.make_node("Cast", [f"{name}_f"], [name], to=out_type))
        outputs.append(helper.make_tensor_value_info(name, out_type, list(shape)))
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, list(in_shape))
    model = helper.make_model(
        helper.make_graph(nodes, "g", [image], outputs, initializer=inits),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    if contract is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "edgeloc_contract", json.dumps(contract)
    onnx.save(model, str(path))
    return path


def test_the_handmade_model_answers_its_constant_box(tmp_path):
    loc = Localizer.load(onnx_model(tmp_path / "m.onnx"), "onnx")
    r = loc.predict(np.full((48, 64, 3), 90, np.uint8))
    np.testing.assert_allclose(r.box, (6.4, 9.6, 38.4, 43.2), atol=1e-3)
    assert (r.label, round(r.score, 2)) == ("cat", 0.88)


def test_a_model_path_without_a_file_name_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """`--model .` made sidecar_path raise ValueError ("has an empty name") in infer."""
    from runtime.infer import main

    monkeypatch.chdir(tmp_path)
    cv2.imwrite("a.png", np.zeros((8, 8, 3), np.uint8))
    for model in (".", "/"):
        assert main(["a.png", "--model", model]) == 2


def test_results_are_not_written_where_the_models_contract_is_looked_for(tmp_path, monkeypatch):
    """`infer --out bare.json` beside a model without an embedded contract wrote the results
    where the next run reads the contract from: every later run failed to load the model."""
    from runtime.infer import main

    monkeypatch.chdir(tmp_path)
    cv2.imwrite("a.png", np.zeros((8, 8, 3), np.uint8))
    onnx_model(tmp_path / "bare.onnx")
    assert main(["a.png", "--model", "bare.onnx", "--out", "bare.json"]) == 2
    assert not (tmp_path / "bare.json").exists()
    assert main(["a.png", "--model", "bare.onnx", "--out", "results.json"]) == 0


def test_a_fixed_batch_of_two_is_refused_at_load(tmp_path):
    """It failed on every image at run time ("Got invalid dimensions") instead."""
    path = onnx_model(tmp_path / "b2.onnx", in_shape=(2, 32, 32, 3),
                      outs=(("box", (2, 4), BOX * 2), ("score", (2, 2), SCORE * 2)))
    with pytest.raises(UserError, match="fixed batch of 2"):
        Localizer.load(path)


def test_unnamed_outputs_both_four_wide_are_refused_not_guessed(tmp_path):
    """With 4 labels and outputs not named box/score, the first one was taken as the box
    with a warning: here the score, so every box was wrong."""
    labels = {**CONTRACT, "labels": ["none", "a", "b", "c"]}
    path = onnx_model(tmp_path / "k4.onnx", contract=labels,
                      outs=(("out1", (1, 4), [0.1, 0.2, 0.3, 0.4]), ("out0", (1, 4), BOX)))
    with pytest.raises(UserError, match="cannot tell the box output from the score"):
        Localizer.load(path)


def test_unnamed_outputs_of_different_widths_are_told_apart_by_shape(tmp_path):
    path = onnx_model(tmp_path / "u.onnx", outs=(("out1", (1, 2), SCORE), ("out0", (1, 4), BOX)))
    r = Localizer.load(path).predict(np.zeros((10, 10, 3), np.uint8))
    np.testing.assert_allclose(r.box_norm, BOX, atol=1e-6)


def test_a_dynamic_batch_model_that_returns_too_few_rows_is_a_model_error(tmp_path):
    """predict_batch died with an IndexError traceback."""
    path = onnx_model(tmp_path / "dyn.onnx", in_shape=("N", 32, 32, 3),
                      outs=(("box", ("N", 4), BOX), ("score", ("N", 2), SCORE)))
    loc = Localizer.load(path)
    image = np.zeros((10, 10, 3), np.uint8)
    assert loc.predict(image).label == "cat"  # one image: one row, right
    with pytest.raises(ModelError, match="for 2 images"):
        loc.predict_batch([image, image])


def test_integer_outputs_without_a_scale_are_refused(tmp_path):
    """uint8 outputs carry no scale in ONNX: codes were read as box and probabilities."""
    path = onnx_model(tmp_path / "u8out.onnx", out_type=TensorProto.UINT8)
    with pytest.raises(UserError, match="without a quantization scale"):
        Localizer.load(path)


def test_a_quantized_input_for_normalized_values_is_refused():
    """A model from another tool quantized for [-1, 1] saw every pixel clipped to 1."""
    normalized = TensorInfo("x", (1, 32, 32, 3), np.dtype(np.uint8), quant=(1 / 127.5, 127))
    with pytest.raises(UserError, match="expects normalized input"):
        InputConverter(normalized)
    raw = TensorInfo("x", (1, 32, 32, 3), np.dtype(np.uint8), quant=(0.99998, 0))
    pixels = np.array([[[[0, 128, 255]]]], np.uint8)
    assert InputConverter(raw)(pixels).tolist() == [[[[0, 128, 255]]]]


@pytest.mark.parametrize("field, value, match", [
    ("input_size", "64", "input_size '64'"),  # was read as 6x4
    ("input_size", [True, True], "input_size"),  # was 1x1
    ("input_size", [32.5, 32], "input_size"),  # was 32x32
    ("input_size", [100_000, 100_000], "1..4096"),  # 30 GB per frame
    ("labels", ["none", 5], "distinct names"),  # printed as the number 5
    ("labels", ["none", "none"], "distinct names"),
    ("labels", {"none": 0, "cat": 1}, "distinct names"),
    ("color", "BGR", "RGB pixels only"),  # ignored: a BGR model was fed RGB
    ("extra", [], "extra"),
])
def test_contract_fields_the_runtime_would_misread_are_refused(field, value, match):
    with pytest.raises(UserError, match=match):
        Contract.from_json(json.dumps({**CONTRACT, field: value}))


def test_contract_numbers_that_are_not_finite_are_one_line_errors():
    """Infinity raised OverflowError (a traceback) from int()."""
    for text in ('{"input_size": [Infinity, 32], "labels": ["none"]}',
                 '{"input_size": [32, 32], "labels": ["none"], "version": Infinity}'):
        with pytest.raises(UserError):
            Contract.from_json(text)
    assert Contract.from_json(json.dumps({**CONTRACT, "input_size": [32.0, 24.0]})).input_size \
        == (32, 24)


def test_a_sidecar_size_is_checked_for_a_model_of_any_input_size(tmp_path):
    """A dynamic-size model takes the sidecar's size as is: "64" made every frame 4x6."""
    path = onnx_model(tmp_path / "dynhw.onnx", in_shape=(1, "H", "W", 3), contract=None)
    path.with_suffix(".json").write_text(json.dumps({**CONTRACT, "input_size": "64"}))
    with pytest.raises(UserError, match=r"dynhw\.json: model contract input_size"):
        Localizer.load(path)


def test_a_damaged_onnx_model_leaves_stdout_to_the_results(tmp_path, capfd):
    """ONNX Runtime printed a 4-line "EP Error ... retrying" banner on stdout, where infer
    writes its JSON lines, before the one-line error."""
    model = onnx.load(str(onnx_model(tmp_path / "src.onnx")))
    model.graph.node[1].op_type = "QQQQ"
    path = tmp_path / "badop.onnx"  # an op name that is not UTF-8, as a flipped bit makes
    path.write_bytes(model.SerializeToString().replace(b"QQQQ", b"\xd4QQQ"))
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        Localizer.load(path)
    assert capfd.readouterr().out == ""


def test_a_tensor_name_that_is_not_utf8_is_a_user_error(tmp_path):
    """Reading the input's name raised UnicodeDecodeError with a traceback."""
    model = onnx.load(str(onnx_model(tmp_path / "src.onnx")))
    for node in model.graph.node:
        node.input[:] = ["QQQQQ" if n == "image" else n for n in node.input]
    model.graph.input[0].name = "QQQQQ"
    path = tmp_path / "badname.onnx"
    path.write_bytes(model.SerializeToString().replace(b"QQQQQ", b"\xd4QQQQ"))
    with pytest.raises(UserError, match="tensor name that is not UTF-8"):
        Localizer.load(path)


@pytest.mark.parametrize("backend", ["tflite", "litert", "tflite_runtime"])
def test_a_backend_for_the_other_format_says_how_to_fix_it(tmp_path, backend):
    with pytest.raises(UserError, match=r"leave --backend out .* pass a \.tflite model"):
        Localizer.load(onnx_model(tmp_path / "m.onnx"), backend)
