"""The Localizer API and its backends, on tiny models the tests build."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import BACKENDS, Localizer
from runtime._tensors import TensorInfo, dequantizer
from runtime.backends import resolve_providers, sniff_format
from runtime.errors import UserError
from tests import test_runtime_helpers as helpers
from tests._predict_summary import summary
from tests.test_runtime_helpers import BOX_XYXY, LABELS, SCORE, SIZE

runtime_models = helpers.runtime_models  # the session fixture, shared by the runtime tests

ROOT = Path(__file__).resolve().parent.parent
W, H = 640, 480
EXPECTED_PX = np.array([BOX_XYXY[0] * W, BOX_XYXY[1] * H, BOX_XYXY[2] * W, BOX_XYXY[3] * H])


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _engine_missing(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name].module.split(".")[0]) is None


# (backend, fixture model key, box tolerance in pixels, score tolerance)
CASES = [
    (name, key, 1.0 if key in ("f32", "onnx") else 12.0, 0.002 if key in ("f32", "onnx") else 0.02)
    for name, entry in BACKENDS.items()
    for key in (("f32", "u8", "i8") if entry.format == "tflite" else ("onnx", "onnx_i8"))
]


# tflite-runtime needs NumPy 1.x: `make test` installs it in this side venv (see the Makefile).
LEGACY_PY = ROOT / ".venv-tflite-runtime" / "bin" / "python"


def _predict(model: Path, backend: str) -> dict:
    """One prediction on a fixed image as plain data: in this process, or, for tflite-runtime
    (which cannot run with this venv's NumPy 2), in the side venv `make test` builds."""
    if not _engine_missing(backend):
        return summary(model, backend, SIZE)
    if backend != "tflite_runtime" or not LEGACY_PY.exists():
        pytest.skip(f"{BACKENDS[backend].package} is not installed (nor {LEGACY_PY.parent.parent.name})")
    out = subprocess.run([str(LEGACY_PY), "-m", "tests._predict_summary", str(model), backend, str(SIZE)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["numpy"].startswith("1.") and data["heavy"] == []  # the real legacy stack
    return data


@pytest.mark.parametrize(
    "backend,key,box_tol,score_tol", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_backend_gives_the_known_box_in_pixels(runtime_models, backend, key, box_tol, score_tol):
    r = _predict(runtime_models[key], backend)
    assert r["backend"] == backend
    assert r["labels"] == list(LABELS)
    np.testing.assert_allclose(r["box"], EXPECTED_PX, atol=box_tol)
    assert r["label"] == "cat" and r["present"]
    assert abs(r["score"] - SCORE[1]) < score_tol
    assert len(r["scores"]) == 2 and abs(sum(r["scores"]) - 1) < 0.02
    assert r["latency_ms"] > 0 and r["total_ms"] >= r["latency_ms"]
    assert r["provider"]
    assert r["raw"] == [[1, 4], [1, 2]] and r["raw_dtype"] == "float32"


def test_auto_backend_picks_by_extension(runtime_models):
    assert Localizer.load(runtime_models["u8"], threads=1).backend_name == "ai_edge_litert"
    loc = Localizer.load(runtime_models["onnx"], threads=1)
    assert loc.backend_name == "onnxruntime" and loc.provider == "CPUExecutionProvider"
    assert loc.contract.precision == "fp32"  # read from ONNX metadata_props


def test_box_in_pixels_follows_the_input_image_and_box_format(runtime_models):
    loc = Localizer.load(runtime_models["xywh"], threads=1)
    assert loc.contract.box_format == "xywh"
    small = _image()[:100, :200]
    r = loc.predict(small)
    np.testing.assert_allclose(r.box, [20, 20, 120, 90], atol=0.5)  # xywh -> xyxy, then 200x100 px
    np.testing.assert_allclose(r.box_norm, BOX_XYXY, atol=0.003)


def test_bgr_flag_and_batch_match_single_predictions(runtime_models):
    loc = Localizer.load(runtime_models["onnx"], threads=1)
    rgb = [_image(i) for i in range(3)]
    singles = [loc.predict(im) for im in rgb]
    bgr = loc.predict(cv2.cvtColor(rgb[0], cv2.COLOR_RGB2BGR), bgr=True)
    np.testing.assert_allclose(bgr.scores, singles[0].scores, atol=1e-6)
    batch = loc.predict_batch(rgb)
    assert len(batch) == 3 and loc.predict_batch([]) == []
    for a, b in zip(batch, singles):
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    tfl = Localizer.load(runtime_models["u8"], threads=1)  # TFLite: batch 1 interpreter, looped
    assert [r.label for r in tfl.predict_batch(rgb[:2])] == ["cat", "cat"]


def test_threshold_sets_presence(runtime_models):
    loc = Localizer.load(runtime_models["onnx"], threads=1, threshold=0.95)
    assert not loc.predict(_image()).present
    loc.threshold = 0.5
    assert loc.predict(_image()).present


def test_model_without_contract_warns_and_still_works(runtime_models):
    for key in ("bare", "onnx_bare"):
        with pytest.warns(UserWarning, match="no edgeloc contract"):
            loc = Localizer.load(runtime_models[key], threads=1)
        assert loc.contract.input_size == (SIZE, SIZE)
        assert loc.contract.labels == ["none", "object"]
        r = loc.predict(_image())
        assert r.label == "object"
        np.testing.assert_allclose(r.box, EXPECTED_PX, atol=12)


def test_sidecar_contract_is_read_and_checked(runtime_models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(runtime_models["bare"].read_bytes())
    sidecar = json.loads(Localizer.load(runtime_models["u8"]).contract.to_json())
    sidecar["labels"] = ["none", "dog"]
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a contract is there: no warning
        assert Localizer.load(model, threads=1).predict(_image()).label == "dog"
    sidecar["input_size"] = [64, 64]
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="contract says 64x64"):
        Localizer.load(model)


def test_backend_and_provider_choices(runtime_models):
    with pytest.raises(ValueError, match="unknown backend 'trt'.*onnxruntime"):
        Localizer.load(runtime_models["u8"], backend="trt")
    with pytest.raises(ValueError, match="runs onnx models"):
        Localizer.load(runtime_models["u8"], backend="onnxruntime")
    for threads in (0, 100_000):  # TFLite segfaulted and ONNX Runtime hung at 100,000
        with pytest.raises(UserError, match=f"threads must be between 1 and 64, got {threads}"):
            Localizer.load(runtime_models["u8"], threads=threads)
        with pytest.raises(UserError, match="threads must be between 1 and 64"):
            Localizer.load(runtime_models["onnx"], threads=threads)
    with pytest.warns(UserWarning, match="CUDAExecutionProvider is not available"):
        loc = Localizer.load(runtime_models["onnx"], providers=["cuda"], threads=1)
    assert loc.predict(_image()).provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="unknown ONNX Runtime provider 'gpu'"):
        resolve_providers(["gpu"], ["CPUExecutionProvider"])
    assert resolve_providers("cuda,cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]

    for threads in (2.7, True, "abc", float("nan")):  # were 2 and 1 threads, or a traceback
        with pytest.raises(UserError, match="threads must be a whole number"):
            Localizer.load(runtime_models["u8"], threads=threads)
    with pytest.raises(UserError, match=r"unknown backend \['onnx'\]; valid"):
        Localizer.load(runtime_models["onnx"], backend=["onnx"])
    with pytest.raises(UserError, match="providers must be a name or a list"):
        Localizer.load(runtime_models["onnx"], providers=3)


def test_library_arguments_that_would_answer_wrongly_are_refused(runtime_models):
    for threshold in (float("nan"), 2, -0.1, None):  # NaN and 2: never `present`, no warning
        with pytest.raises(UserError, match=r"threshold must be a score in \[0, 1\]"):
            Localizer.load(runtime_models["u8"], threshold=threshold, threads=1)
    loc = Localizer.load(runtime_models["u8"], threads=1)
    img = _image()
    with pytest.raises(UserError, match="use predict\\(\\) for one image"):
        loc.predict_batch(img)  # was one "result" per row of the image
    assert len(loc.predict_batch(im for im in (img, img))) == 2  # any iterable of images
    assert len(loc.predict_batch(np.stack([img, img]))) == 2
    pixels = loc.prepare(img)
    assert loc.predict(img, pixels=pixels).box == loc.predict(img).box
    for bad in (pixels[0], np.repeat(pixels, 2, axis=0), pixels.astype(np.float32),
                np.zeros((1, 8, 8, 3), np.uint8)):  # blamed the model, or answered row 0
        with pytest.raises(UserError, match="pixels must be this model's prepare"):
            loc.predict(img, pixels=bad)


def _bad_models(
    folder: Path, good_tflite: bytes, good_onnx: bytes
) -> dict[str, tuple[Path, type, str]]:
    cases = {
        "missing": (folder / "nope.tflite", UserError, "not found.*make models"),
        "empty": (folder / "empty.tflite", ValueError, "empty or truncated"),
        "truncated_tflite": (folder / "cut.tflite", ValueError, "TFLite model"),
        "text_as_tflite": (folder / "text.tflite", ValueError, "no 'TFL3' identifier"),
        "text_as_onnx": (folder / "text.onnx", ValueError, "not a loadable ONNX model"),
        "truncated_onnx": (folder / "cut.onnx", ValueError, "not a loadable ONNX model"),
        "unknown": (folder / "weights.bin", ValueError, "neither a TFLite nor an ONNX model"),
        "folder": (folder, ValueError, "is a directory"),
    }
    folder.mkdir(exist_ok=True)
    cases["empty"][0].write_bytes(b"")
    cases["truncated_tflite"][0].write_bytes(good_tflite[: len(good_tflite) // 2])
    cases["text_as_tflite"][0].write_text("this is not a model, just some text\n" * 4)
    cases["text_as_onnx"][0].write_text("this is not a model, just some text\n" * 4)
    cases["truncated_onnx"][0].write_bytes(good_onnx[: len(good_onnx) // 3])
    cases["unknown"][0].write_bytes(b"\x00" * 64)
    return cases


def test_a_model_named_for_the_other_format_says_rename_it(runtime_models, tmp_path, capsys):
    from runtime import infer

    onnx_as_tflite, tflite_as_onnx = tmp_path / "a.tflite", tmp_path / "b.onnx"
    onnx_as_tflite.write_bytes(runtime_models["onnx"].read_bytes())
    tflite_as_onnx.write_bytes(runtime_models["u8"].read_bytes())
    with pytest.raises(UserError, match=r"a.tflite is an ONNX model, not TFLite; rename it a.onnx"):
        Localizer.load(onnx_as_tflite)
    with pytest.raises(UserError, match=r"b.onnx is a TFLite model, not ONNX; rename it b.tflite"):
        Localizer.load(tflite_as_onnx)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), _image())
    assert infer.main(["--model", str(onnx_as_tflite), str(image)]) == 2
    assert "is an ONNX model, not TFLite; rename it a.onnx" in capsys.readouterr().err
    # Without either extension the bytes decide, as before.
    for key, fmt in (("onnx", "onnx"), ("u8", "tflite")):
        plain = tmp_path / f"model_{key}.bin"
        plain.write_bytes(runtime_models[key].read_bytes())
        assert sniff_format(plain)[0] == fmt


def test_bad_model_files_raise_clear_errors(runtime_models, tmp_path):
    cases = _bad_models(
        tmp_path / "bad", runtime_models["u8"].read_bytes(), runtime_models["onnx"].read_bytes()
    )
    for path, exc, pattern in cases.values():
        with pytest.raises(exc, match=pattern):
            Localizer.load(path)
    assert sniff_format(runtime_models["u8"])[0] == "tflite"
    assert sniff_format(runtime_models["onnx"])[0] == "onnx"


def _onnx_with_input(path: Path, shape: list[int], elem: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    box = helper.make_tensor("b", TensorProto.FLOAT, [1, 4], [0.1, 0.2, 0.6, 0.9])
    score = helper.make_tensor("s", TensorProto.FLOAT, [1, 2], [0.1, 0.9])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["box"], value=box),
            helper.make_node("Constant", [], ["score"], value=score),
        ],
        "odd",
        [helper.make_tensor_value_info("image", elem, shape)],
        [
            helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 2]),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path
    )
    return path


def test_unexpected_input_shape_or_dtype(tmp_path):
    from onnx import TensorProto

    nchw = _onnx_with_input(tmp_path / "nchw.onnx", [1, 3, 32, 32], TensorProto.FLOAT)
    with pytest.raises(ValueError, match="NCHW"):
        Localizer.load(nchw)
    half = _onnx_with_input(tmp_path / "half.onnx", [1, 32, 32, 3], TensorProto.FLOAT16)
    with pytest.raises(ValueError, match="dtype float16"):
        Localizer.load(half)
    dynamic = _onnx_with_input(tmp_path / "dyn.onnx", [1, -1, -1, 3], TensorProto.UINT8)
    with pytest.raises(ValueError, match="no fixed size"):
        Localizer.load(dynamic)
    ok = _onnx_with_input(tmp_path / "ok.onnx", [1, 48, 40, 3], TensorProto.UINT8)
    with pytest.warns(UserWarning):
        loc = Localizer.load(ok)
    assert loc.contract.input_size == (48, 40)
    with pytest.raises(ValueError, match="must be uint8"):
        loc.predict(np.zeros((10, 10, 3), np.float32))


_BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras", "onnx"):
            raise ImportError(f"blocked for this test: {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def test_runtime_works_without_tensorflow_keras_or_tf2onnx(runtime_models):
    script = _BLOCKER + textwrap.dedent(f"""
        import numpy as np
        import runtime
        from runtime import Localizer
        import runtime.webcam, runtime.infer, runtime.serve
        img = np.zeros((240, 320, 3), np.uint8)
        for path in {[str(runtime_models[k]) for k in ("u8", "i8", "onnx", "bare")]!r}:
            r = Localizer.load(path, threads=1).predict(img)
            assert r.label in ("cat", "object"), r
        try:
            import tensorflow
        except ImportError:
            pass
        else:
            raise SystemExit("blocker did not work")
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
        print("OK", heavy)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK []" in proc.stdout


@pytest.mark.parametrize("dtype, quant", [(np.int8, (0.0123, -7)), (np.uint8, (0.00390625, 0)),
                                          (np.uint8, (0.5, 131)), (np.int8, (0.0, 0))])
def test_output_table_dequantization_equals_the_arithmetic(dtype, quant):
    info = TensorInfo(name="score", shape=(1, 256), dtype=np.dtype(dtype), quant=quant)
    codes = np.arange(256, dtype=np.uint8).view(dtype).reshape(1, 256)
    got = dequantizer(info)(codes)
    want = codes.astype(np.float32) if not quant[0] else (codes.astype(np.float32) - quant[1]) * np.float32(quant[0])
    assert got.dtype == np.float32 and got.shape == (1, 256)
    np.testing.assert_array_equal(got, want)  # bit-identical, every code
    floats = np.ones((1, 4), np.float32)
    assert dequantizer(TensorInfo("box", (1, 4), np.dtype(np.float32)))(floats) is floats
