"""The exporters: every format and precision round-trips, matches Keras, carries its contract."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from export.options import CalibrationOptions, VerifyOptions
from runtime.contract import CONTRACT_KEY, Contract, preprocess, read_tflite_metadata

SIZE = 32
STEP = 1 / 256  # output quantization step of uint8/int8 box and score tensors
CALIB, VERIFY = 48, 48
FAST = dict(calib=CalibrationOptions(size=CALIB), verify=VerifyOptions(size=VERIFY))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small_cnn at 32 px, briefly fitted on blobs, saved as a run directory."""
    import keras

    from train.model import ModelSpec, build_model
    from data.catalog import get_source

    keras.utils.set_random_seed(0)
    spec = ModelSpec(backbone="small_cnn", image_size=SIZE, alpha=0.5, head_units=16)
    source = get_source("blobs", split="train", size=320, seed=0)
    samples = [source[i] for i in range(len(source))]
    x = np.stack([preprocess(s.image, SIZE) for s in samples]).astype(np.float32)
    y = {"box": np.stack([s.box for s in samples]), "score": np.array([s.label for s in samples])}
    model = build_model(spec)
    for layer in model.get_layer("small_cnn").layers:  # BN statistics settle within a few steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.6
    model.compile(
        keras.optimizers.Adam(3e-3), loss={"box": "mse", "score": "sparse_categorical_crossentropy"}
    )
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("run")
    model.save(folder / "model.keras")
    config = {"model": {**asdict(spec), "labels": list(spec.labels)}, "data": {"source": "blobs"}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def reference(run_dir):
    """(pixels, Keras boxes, Keras scores) on fresh test images; the model must not be constant."""
    from train.config import load_run
    from data.catalog import get_source

    model, _ = load_run(run_dir)
    source = get_source("blobs", split="test", size=24, seed=5)
    pixels = np.stack([preprocess(source[i].image, SIZE) for i in range(len(source))])
    out = model(pixels.astype(np.float32), training=False)
    box, score = np.asarray(out["box"]), np.asarray(out["score"])
    assert box.std(axis=0).max() > 0.01, "degenerate test model: boxes do not depend on the image"
    return pixels, box, score


def _run(path: Path, pixels: np.ndarray):
    from runtime import Localizer

    loc = Localizer.load(path, threads=1)
    box, score = loc.invoke(pixels)
    return loc, box, score


TFLITE = [("tflite", q) for q in ("none", "fp16", "dynamic", "int8")]
ONNX = [("onnx", q) for q in ("none", "int8")]
# (median, max) of |output - Keras output| per precision: float exact to 1e-4, fp16 and
# dynamic-range close, int8 a few output steps (1/256) typically; the max allows for the
# error that builds up over the eleven quantized layers of this barely trained 32 px model.
TOL = {
    "none": (1e-4, 1e-4),
    "fp16": (2e-3, 5e-3),
    "dynamic": (1e-2, 2e-2),
    "int8": (3 * STEP, 16 * STEP),
}


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """Every (format, quantize) export of the test model, verified, with its result."""
    from export.onnx import export_onnx
    from export.tflite import export_tflite

    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for fmt, quantize in TFLITE + ONNX:
        fn = export_tflite if fmt == "tflite" else export_onnx
        out[fmt, quantize] = fn(run_dir, folder / f"m_{quantize}.{fmt}", quantize=quantize, **FAST)
    return out


def test_every_registered_format_and_precision_is_exported_here(capsys):
    """The tests below cover the registry itself: a new format or precision must be added."""
    from export._cli import main_export, main_onnx, main_tflite
    from export.formats import FORMATS

    assert [(f, q) for f, entry in FORMATS.items() for q in entry.quantize] == TFLITE + ONNX
    for main, fmt in ((main_tflite, "tflite"), (main_onnx, "onnx")):  # --help from the registry
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "{" + ",".join(FORMATS[fmt].quantize) + "}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main_export(["--help"])
    assert f"comma list of {', '.join(FORMATS)}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("fmt,quantize", TFLITE + ONNX, ids=[f"{f}-{q}" for f, q in TFLITE + ONNX])
def test_every_format_and_precision_agrees_with_keras(exported, reference, run_dir, fmt, quantize):
    from runtime.integrity import sha256_file

    result = exported[fmt, quantize]
    pixels, keras_box, keras_score = reference
    assert result.path.is_file() and result.ok
    assert result.size_bytes == result.path.stat().st_size
    loc, box, score = _run(result.path, pixels)
    assert box.shape == keras_box.shape and score.shape == keras_score.shape
    median_tol, max_tol = TOL[quantize]
    for name, got, want in (("box", box, keras_box), ("score", score, keras_score)):
        diff = np.abs(got - want)
        assert np.median(diff) <= median_tol and diff.max() <= max_tol, (
            f"{fmt} {quantize} {name}: median {np.median(diff):.2g}, max {diff.max():.2g} vs Keras"
        )
    c = loc.contract
    assert c.precision == result.precision
    assert (
        c.input_size == (SIZE, SIZE) and c.labels == ["none", "object"] and c.box_format == "xyxy"
    )
    assert c.input_dtype == "uint8" and loc._backend.input.dtype == np.uint8
    assert c.source_sha256 == sha256_file(run_dir / "model.keras")
    assert c.extra["integrity"] == "sha256"
    assert (c.calibration is not None) == (quantize == "int8")
    if quantize == "int8":
        assert c.calibration["source"] == "blobs"
        assert c.calibration["size"] == CALIB - c.calibration["screened_out"] >= CALIB * 0.95
    v = result.verification
    assert v.n == VERIFY and abs(v.iou_drop) < 0.02 and v.status == "ok"


def test_int8_tflite_is_all_integer_with_exact_pixel_input(exported):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(exported["tflite", "int8"].path))
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)  # raw pixels, no rescale
    outs = {d["name"]: d for d in it.get_output_details()}
    assert set(outs) == {"box", "score"}  # tensors renamed after their signature keys
    assert all(d["dtype"] == np.uint8 for d in outs.values())
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    float_ops = [
        op["op_name"]
        for op in it._get_ops_details()
        if any(tensors[i]["dtype"] == np.float32 for i in op["inputs"] if i >= 0)
    ]
    assert float_ops == [], f"int8 model still computes in float: {float_ops}"


def test_no_flex_or_custom_ops_in_any_tflite_export(exported):
    from ai_edge_litert.interpreter import Interpreter

    for (fmt, quantize), result in exported.items():
        if fmt != "tflite":
            continue
        ops = {op["op_name"] for op in Interpreter(model_path=str(result.path))._get_ops_details()}
        assert ops and not any("Flex" in op or "CUSTOM" in op.upper() for op in ops), (
            quantize,
            ops,
        )


def test_contract_survives_in_tflite_metadata_and_onnx_metadata_props(exported):
    import onnx

    for (fmt, _), result in exported.items():
        if fmt == "tflite":
            raw = read_tflite_metadata(result.path.read_bytes())[CONTRACT_KEY]  # pure python
        else:
            props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
            raw = props[CONTRACT_KEY]
        contract = Contract.from_json(raw)
        assert contract == result.contract
        assert contract.extra["format"] == fmt and "softmax" in contract.extra["score_meaning"]


def test_every_export_is_sealed_with_its_own_digest(exported):
    """runtime.integrity: the file's SHA-256 is embedded in it; any flipped byte shows."""
    from runtime import integrity
    from runtime.errors import UserError

    for (fmt, quantize), result in exported.items():
        data = result.path.read_bytes()
        assert integrity.check(data, result.path.name) is True, (fmt, quantize)
        for offset in (0, len(data) // 3, len(data) - 1):
            flipped = bytearray(data)
            flipped[offset] ^= 0x01
            with pytest.raises(UserError, match="damaged"):
                integrity.check(bytes(flipped), result.path.name)


def test_onnx_exports_name_their_tensors_and_int8_is_qdq(exported):
    import onnx

    for quantize in ("none", "int8"):
        model = onnx.load(str(exported["onnx", quantize].path))
        assert [i.name for i in model.graph.input] == ["image"]
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert sorted(o.name for o in model.graph.output) == ["box", "score"]
        ops = {n.op_type for n in model.graph.node}
        assert ("QuantizeLinear" in ops) == (quantize == "int8")


def test_onnx_int8_is_u8s8_and_gives_the_same_boxes_on_x86_and_arm_graphs(exported):
    """uint8 activations: ONNX Runtime builds one integer graph whether int8 activations are
    allowed in fused kernels (its ARM default) or not (its x86 default)."""
    import onnx
    import onnxruntime as ort

    result = exported["onnx", "int8"]
    model = onnx.load(str(result.path))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)
    assert result.contract.extra["quant_format"] == "QDQ U8S8"
    assert result.contract.calibration["reduce_range"] is True
    pixels = np.random.default_rng(3).integers(0, 256, (6, 1, *result.contract.input_size, 3))
    outs = {}
    for allowed in ("0", "1"):  # x86 default, ARM default
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.qdqisint8allowed", allowed)
        sess = ort.InferenceSession(str(result.path), opts, providers=["CPUExecutionProvider"])
        outs[allowed] = [sess.run(None, {"image": x.astype(np.uint8)}) for x in pixels]
    for a, b in zip(outs["0"], outs["1"], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "io,dtype,quant", [("int8", np.int8, (1.0, -128)), ("float32", np.float32, (0.0, 0))]
)
def test_tflite_int8_io_options(run_dir, reference, tmp_path, io, dtype, quant):
    from ai_edge_litert.interpreter import Interpreter

    from export.tflite import export_tflite

    result = export_tflite(run_dir, tmp_path / f"m_{io}.tflite", quantize="int8", io=io, **FAST)
    it = Interpreter(model_path=str(result.path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == dtype and inp["quantization"] == quant and out["dtype"] == dtype
    loc, box, _ = _run(result.path, reference[0])  # the runtime feeds pixel - 128 / floats itself
    assert loc.contract.input_dtype == io
    assert np.median(np.abs(box - reference[1])) <= TOL["int8"][0]
    assert np.abs(box - reference[1]).max() <= TOL["int8"][1]


@pytest.mark.slow
def test_combined_cli_writes_the_set_and_one_table(run_dir, tmp_path, capsys):
    from export.__main__ import main

    rc = main(
        [
            "--model",
            str(run_dir),
            "--formats",
            "tflite,onnx",
            "--quantize",
            "none,int8",
            "--out-dir",
            str(tmp_path),
            "--calib-size",
            str(CALIB),
            "--verify-size",
            str(VERIFY),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model_fp32.onnx", "model_fp32.tflite", "model_int8.onnx", "model_int8.tflite"]
    for word in ("keras", "reference", "mean IoU", "CorLoc", "IoU drop", "score agree"):
        assert word in out
    assert out.count(" ok ") >= 4


def test_a_file_that_changes_the_class_keras_is_sure_of_fails_verification(run_dir, exported):
    """The IoU gate alone passed an int8 file whose scores all tied (every image 'none')."""
    from dataclasses import replace

    from export._load import load_model
    from export.verify import holdout_set, verify_model

    path = exported["tflite", "int8"].path
    holdout = holdout_set(load_model(run_dir), VerifyOptions(size=VERIFY))
    honest = verify_model(path, holdout, fmt="tflite", precision="int8")
    assert honest.passed and honest.sure_flips == 0.0
    _, score = _run(path, holdout.pixels)[1:]
    opposite = np.eye(score.shape[1])[np.argmin(score, axis=1)]  # Keras "sure" of another class
    flipped = verify_model(path, replace(holdout, keras_score=opposite), fmt="tflite", precision="int8")
    assert flipped.iou_drop == honest.iou_drop and flipped.sure_flips == 1.0
    assert not flipped.passed and "class changed on 100% of the images Keras is sure of" in flipped.status


def test_a_failed_verification_leaves_no_file(run_dir, tmp_path, capsys, monkeypatch):
    from export import VerificationFailed
    from export._cli import main_tflite
    from export.tflite import export_tflite
    from tests.test_atomic import kill_mid_write

    out = tmp_path / "m.tflite"
    leftovers = kill_mid_write(tmp_path, "savedmodel", "m.tflite")  # a killed export's files
    assert len(leftovers) == 2 and all(".edgeloc-tmp." in p.name for p in leftovers), leftovers
    with pytest.raises(VerificationFailed) as info:  # any drop exceeds a negative limit
        export_tflite(
            run_dir, out, quantize="int8", calib=CalibrationOptions(size=CALIB),
            verify=VerifyOptions(size=VERIFY, max_iou_drop=-1.0),
        )
    assert info.value.args[0].verification.status.startswith("FAILED")
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temporary file
    assert not any(p.exists() for p in leftovers)  # the killed export's files are gone too
    monkeypatch.setattr("export.verify.MAX_SURE_FLIPS", -1.0)  # the CLI refuses a negative drop
    rc = main_tflite(
        [
            "--model",
            str(run_dir),
            "--out",
            str(out),
            "--calib-size",
            str(CALIB),
            "--verify-size",
            str(VERIFY),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "was not written" in err and not out.exists()


def test_one_calibration_generator_feeds_both_formats(run_dir):
    from export.calib import calibration_set
    from export.onnx import calibration_reader
    from export.tflite import representative_dataset
    from data.catalog import get_source

    config = {"data": {"source": "blobs"}}
    calib = calibration_set(None, config=config, image_size=SIZE, size=10, seed=3)
    again = calibration_set("blobs", config={}, image_size=SIZE, size=10, seed=3)
    assert calib.images.shape == (10, SIZE, SIZE, 3) and calib.images.dtype == np.uint8
    np.testing.assert_array_equal(calib.images, again.images)  # seeded
    assert calib.info == {"source": "blobs", "split": "train", "size": 10, "seed": 3}
    source = get_source("blobs", split="train", size=10, seed=0)  # seed=3 only shuffles
    by_runtime = {preprocess(source[i].image, SIZE).tobytes() for i in range(10)}
    assert {im.tobytes() for im in calib.images} == by_runtime  # the runtime's preprocessing
    tflite_batches = [b[0] for b in representative_dataset(calib, "uint8")()]
    reader = calibration_reader(calib, "image", "uint8")
    onnx_batches = []
    while (item := reader.get_next()) is not None:
        onnx_batches.append(item["image"])
    assert len(tflite_batches) == len(onnx_batches) == 10
    for a, b in zip(tflite_batches, onnx_batches, strict=True):
        np.testing.assert_array_equal(a, b)
    assert tflite_batches[0].min() == 0 and tflite_batches[0].max() == 255  # pinned input range


def test_a_run_that_mixed_sources_calibrates_on_its_mix():
    from export.calib import calibration_set
    from runtime.errors import UserError

    config = {"data": {"source": ["blobs:3", "cat-on-scenes:1"]}}  # as train writes --data a b
    calib = calibration_set(None, config=config, image_size=SIZE, size=12, seed=0)
    assert calib.images.shape == (12, SIZE, SIZE, 3)
    assert calib.info["source"] == ["blobs:3", "cat-on-scenes:1"]
    with pytest.raises(UserError, match="unknown data source.*nope"):
        calibration_set(None, config={"data": {"source": ["blobs", "nope:1"]}}, image_size=SIZE,
                        size=4)


def _image_folder(folder: Path, n: int, junk: int = 0) -> Path:
    """``n`` blob images as PNG files (plus ``junk`` files that only look like images)."""
    import cv2

    from data.catalog import get_source

    folder.mkdir(parents=True, exist_ok=True)
    source = get_source("blobs", split="train", size=n, seed=1)
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.cvtColor(source[i].image, cv2.COLOR_RGB2BGR))
    for i in range(junk):
        (folder / f"junk{i}.jpg").write_text("not an image")
    return folder


def test_folder_calibration_source(run_dir, tmp_path):
    from export.tflite import export_tflite

    folder = _image_folder(tmp_path / "imgs", 12, junk=2)
    result = export_tflite(
        run_dir,
        tmp_path / "m.tflite",
        quantize="int8",
        calib=CalibrationOptions(source=str(folder), size=10),
        verify=VerifyOptions(size=VERIFY),
    )
    assert result.contract.calibration["source"] == str(folder)
    assert result.contract.calibration["size"] == 10


def test_export_accuracy_gives_runs_of_one_name_their_own_folders(tmp_path):
    from benchmarks.export_accuracy import folder_names

    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "run-2", tmp_path / "c" / "run"]
    assert folder_names([str(r) for r in runs]) == ["run", "run-2", "run-2-2", "run-3"]


def test_default_calibration_size_skips_unreadable_files(tmp_path):
    """Without --calib-size, a folder's unreadable files are skipped (and counted), not fatal;
    an explicit size the readable images cannot fill is still an error."""
    from export.calib import calibration_set
    from runtime.errors import UserError

    folder = _image_folder(tmp_path / "imgs", 9, junk=2)
    calib = calibration_set(str(folder), config={}, image_size=SIZE)
    assert len(calib) == 9 and len(calib.skipped) == 2
    with pytest.raises(UserError, match="gave only 9 readable images"):
        calibration_set(str(folder), config={}, image_size=SIZE, size=11)


def _bad_cases(run_dir: Path, tmp: Path) -> list[tuple[str, list[str], str]]:
    import keras

    corrupt = tmp / "corrupt.keras"
    corrupt.write_text("not a zip")
    notkeras = tmp / "notkeras.keras"
    with zipfile.ZipFile(notkeras, "w") as z:
        z.writestr("hello.txt", "hi")
    inp = keras.Input((SIZE, SIZE, 3))
    one_out = tmp / "one_output.keras"
    keras.Model(inp, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(inp))).save(
        one_out
    )
    empty = tmp / "empty"
    empty.mkdir()
    junk = tmp / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("nope")
    few = _image_folder(tmp / "few", 3)
    (few / "old.tflite").write_bytes(b"not a model")  # not an image: left to the folder rule
    photo = tmp / "photo.tflite"  # an image under any name is refused as an output
    photo.write_bytes((few / "img0.png").read_bytes())
    blocker = tmp / "a_file"
    blocker.write_text("x")
    m = ["--model", str(run_dir)]
    q8 = ["--quantize", "int8"]
    return [
        ("missing model", ["--model", str(tmp / "nope")], "not found"),
        ("corrupt model", ["--model", str(corrupt)], "corrupt"),
        ("zip that is no model", ["--model", str(notkeras)], "could not load"),
        ("no box/score outputs", ["--model", str(one_out)], "'box' (B, 4) and 'score'"),
        ("empty calibration folder", m + q8 + ["--calib", str(empty)], "holds no images"),
        (
            "unreadable calibration",
            m + q8 + ["--calib", str(junk), "--calib-size", "1"],
            "no readable images",
        ),
        (
            "too few calibration samples",
            m + q8 + ["--calib", str(few), "--calib-size", "10"],
            "only 3 images, fewer than --calib-size 10",
        ),
        ("unknown source", m + q8 + ["--calib", "no-such-source"], "neither a data source"),
        ("output folder missing", m + ["--out", str(tmp / "no" / "m.tflite")], "does not exist"),
        ("output folder is a file", m + ["--out", str(blocker / "m.tflite")], "is a file, not a folder"),
        ("calibration size", m + q8 + ["--calib-size", "0"], "at least 1"),
        ("out is the model", m + ["--out", str(run_dir / "model.keras")], "would overwrite the input"),
        ("out is the config", m + ["--out", str(run_dir / "config.json")], "would overwrite the input"),
        (
            "out is a calibration image",
            m + q8 + ["--calib", str(few), "--out", str(few / "img0.png")],
            "is an image file; writing a model there would destroy it",
        ),
        (
            "out is another file of the calibration folder",
            m + q8 + ["--calib", str(few), "--out", str(few / "old.tflite")],
            "is a file of the input data",
        ),
        ("out is a photo of a CSV's data", m + ["--out", str(photo)], "is an image file"),
        ("out has another suffix", m + ["--out", str(tmp / "m.onnx")], "must end in .tflite"),
        ("max IoU drop nan", m + ["--max-iou-drop", "nan"], "--max-iou-drop is a mean IoU difference"),
        ("max IoU drop below 0", m + ["--max-iou-drop", "-0.1"], "--max-iou-drop is a mean IoU"),
        ("negative seed", m + ["--seed", "-1"], "--seed must be at least 0"),
    ]


def _exit_code(main, argv: list[str]) -> int:
    """A CLI's exit code, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


def test_bad_inputs_exit_2_with_one_clear_line(run_dir, tmp_path, capsys):
    from export._cli import main_tflite

    inputs = {p: p.read_bytes() for p in run_dir.iterdir()}
    for name, argv, message in _bad_cases(run_dir, tmp_path):
        rc = main_tflite(argv + ["--verify-size", str(VERIFY)])
        captured = capsys.readouterr()
        assert rc == 2, (name, captured)
        assert message in " ".join(captured.err.split()), (name, captured.err)
        assert "Traceback" not in captured.err + captured.out, name
    assert {p: p.read_bytes() for p in run_dir.iterdir()} == inputs  # nothing written there
    assert (tmp_path / "few" / "img0.png").stat().st_size > 100  # the calibration image lives


def test_bad_flags_name_the_valid_values(run_dir, capsys):
    """Choices come from the registries; an unknown value lists them (exit 2, one line)."""
    from export._cli import main_export, main_onnx, main_tflite
    from export.formats import FORMATS
    from export.options import ACTIVATIONS, IO_TYPES, METHODS

    m = ["--model", str(run_dir)]
    cases = [
        (main_tflite, m + ["--quantize", "int4"], "'int4'", FORMATS["tflite"].quantize),
        (main_tflite, m + ["--io", "int16"], "'int16'", IO_TYPES),
        (main_onnx, m + ["--quantize", "int8", "--method", "kl"], "'kl'", METHODS),
        (main_onnx, m + ["--quantize", "fp16"], "'fp16'", FORMATS["onnx"].quantize),
        (main_onnx, m + ["--activations", "uint4"], "'uint4'", ACTIVATIONS),
        (main_onnx, m + ["--opset", "7"], "--opset 7 is out of range", ()),
        (main_export, m + ["--formats", "tflite,coreml"], "unknown format 'coreml'", FORMATS),
        (main_export, m + ["--quantize", "int3"], "unknown --quantize 'int3'", ("fp16", "int8")),
        (main_export, m + ["--calib-size", "many"], "invalid int value", ()),
    ]
    for main, argv, message, valid in cases:
        rc = _exit_code(main, argv)
        err = " ".join(capsys.readouterr().err.split())
        assert rc == 2 and message in err, (argv, err)
        assert all(v in err for v in valid), (argv, err)
        assert "Traceback" not in err and err.count("error") == 1, err


def test_unwritable_output_folder(run_dir, tmp_path, capsys):
    from export._cli import main_tflite

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: use a kernel folder instead
            folder = Path("/proc")
        rc = main_tflite(["--model", str(run_dir), "--out", str(folder / "m.tflite")])
        err = " ".join(capsys.readouterr().err.split())
        assert rc == 2 and "not writable" in err, err
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_make_models_names_files_after_the_object_class(run_dir, tmp_path, capsys):
    from export._cli import main_make_models
    from export.make_models import default_dir, default_name
    from runtime._cli import DEFAULT_MODEL

    assert default_name(run_dir) == "object" and default_name(tmp_path) == "model"
    assert DEFAULT_MODEL.parent == default_dir()  # make models writes what the runtime loads
    assert main_make_models(["--run", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "make demo" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_export_accuracy_benchmark_reports_every_variant(run_dir, tmp_path):
    from benchmarks.export_accuracy import VARIANTS, run

    results, _ = run([str(run_dir)], str(tmp_path), verify_size=VERIFY, calib_size=CALIB)
    rows = results[0]["variants"]
    assert [(r["format"], r["precision"]) for r in rows][1:] == [
        (f, {"none": "fp32"}.get(q, q)) for f, q in VARIANTS
    ]
    for r in rows[1:]:
        assert (tmp_path / run_dir.name / Path(r["file"]).name).is_file()
        assert abs(r["iou_drop"]) < 0.05 and 0 < r["size_ratio"] <= 1
    int8 = [r for r in rows if r["precision"] == "int8"]
    assert len(int8) == 2 and all("target_drop_ok" in r and "target_size_ok" in r for r in int8)
    doc = json.loads((tmp_path / "export_accuracy.json").read_text())
    assert (
        doc["runs"][0]["variants"] == rows
        and "| tflite int8 |" in (tmp_path / "export_accuracy.md").read_text()
    )
