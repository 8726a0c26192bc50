"""How a new user meets the project: the runtime CLIs from another folder, shipped model
names with either engine, and the Makefile run from the wrong place or with no target."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import infer
from runtime._cli import resolve_model
from runtime.models import DEFAULT_MODEL, MODELS_DIR

REPO = Path(__file__).resolve().parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
# As a user's shell runs it: not a sub-make of `make test` (its "Entering directory" lines).
MAKE = ["env", "-u", "MAKEFLAGS", "-u", "MAKELEVEL", "-u", "MFLAGS", "make"]


def test_shipped_names_load_their_onnx_twin_with_an_onnx_backend():
    """`--model face --backend onnx` used to load face_int8.tflite and refuse it as the wrong
    format, though the ONNX twin ships beside it."""
    assert resolve_model("face", "onnx") == MODELS_DIR / "face_int8.onnx"
    assert resolve_model(None, "ort") == resolve_model("cat", "onnxruntime") == MODELS_DIR / "cat_int8.onnx"
    assert resolve_model(None, "litert") == resolve_model(None) == DEFAULT_MODEL
    assert resolve_model("face", "tflite_runtime") == MODELS_DIR / "face_int8.tflite"
    assert all(resolve_model(name, "onnx").is_file() for name in ("cat", "face"))


def test_an_unknown_model_name_lists_the_shipped_ones(tmp_path, write_image, capsys):
    photo = write_image(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
    assert infer.main(["--model", "dog", str(photo)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "no shipped model named 'dog'" in err and "cat, face" in err, err
    assert "Traceback" not in err


def test_infer_from_a_folder_with_spaces_and_unicode(tmp_path, write_image):
    """The README's infer line, run from another folder whose path has spaces and umlauts,
    with the face model by name on the ONNX engine; TensorFlow is never imported."""
    here = tmp_path / "probe install" / "dätä set"
    photo = write_image(here / "imgs" / "kätze ü.png", np.full((48, 64, 3), 90, np.uint8))
    code = (
        "import runpy, sys\n"
        "sys.argv = ['infer', '--model', 'face', '--backend', 'onnx', 'imgs',"
        " '--out', 'res ü.jsonl', '--draw', 'dräwn']\n"
        "try:\n    runpy.run_module('runtime.infer', run_name='__main__')\n"
        "except SystemExit as stop:\n    rc = stop.code\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "sys.exit(f'imported {heavy}' if heavy else rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = (here / "res ü.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["image"] == "imgs/kätze ü.png" and record["label"] == "face", record
    assert (here / record["drawing"]).is_file() and photo.is_file()


def _phony_targets() -> list[str]:
    text = (REPO / "Makefile").read_text()
    return re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()


@needs_make
def test_bare_make_lists_every_target_and_installs_nothing():
    """A bare `make` used to run the first rule: create .venv and install the train stack."""
    dry = subprocess.run([*MAKE, "-n"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert all(line.startswith("echo ") for line in dry.stdout.splitlines()), dry.stdout
    shown = subprocess.run([*MAKE, "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    listed = {line.split()[1] for line in shown.stdout.splitlines() if line.startswith("make ")}
    assert set(_phony_targets()) - {"help"} <= listed, shown.stdout


@needs_make
def test_make_from_another_folder_says_where_to_run_it(tmp_path):
    """`make -f ../Makefile test` would build a .venv in the wrong folder, then fail on
    'No rule to make target pyproject.toml'."""
    done = subprocess.run([*MAKE, "-f", str(REPO / "Makefile"), "-n", "test"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "run make in the edgeloc folder (make -C" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def _python_312_or_later() -> str | None:
    for name in (sys.executable, "python3.12", "python3.13", "python3.14"):
        path = shutil.which(name)
        check = "import sys; sys.exit(sys.version_info < (3, 12))"
        if path and subprocess.run([path, "-c", check], capture_output=True).returncode == 0:
            return path
    return None


@needs_make
def test_legacy_venv_is_not_retried_on_pythons_without_a_wheel(tmp_path):
    """On Python 3.12+ (no tflite-runtime 2.14 wheel) every `make test` used to create a venv
    and ask the package index again, then delete it."""
    python = _python_312_or_later()
    if python is None:
        pytest.skip("no Python 3.12+ interpreter on PATH")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    for _ in range(2):
        done = subprocess.run([*MAKE, f"PY={python}", ".venv-tflite-runtime/.installed"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "has no wheel for Python 3.1" in done.stdout, done.stdout
        assert not (tmp_path / ".venv-tflite-runtime").exists()


@pytest.mark.parametrize("argv, what", [
    (["-m", "train", "--help"], "training"),
    (["-m", "train.evaluate", "--model", "runs/x"], "evaluation"),
    (["-m", "export", "--model", "runs/x"], "export"),
])
def test_training_and_export_on_a_runtime_only_install_say_which_extra(tmp_path, argv, what):
    """With the runtime extra alone (no Keras, no TensorFlow), `python -m train --help`,
    train.evaluate and export ended in a ModuleNotFoundError traceback."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:  # what a runtime-only install looks like to importlib\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('keras', 'tensorflow'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    printed = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, printed
    assert f"{what} needs keras and tensorflow" in printed and "pip install 'edgeloc[train]'" in printed
    assert "Traceback" not in printed


@needs_make
def test_make_clean_keeps_the_users_runs(tmp_path):
    """`make clean` removed runs/: every trained run of the user (and make models' runs)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "model.keras").write_bytes(b"weights")
    (tmp_path / "build" / "lib").mkdir(parents=True)
    done = subprocess.run([*MAKE, "clean"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "mine" / "model.keras").read_bytes() == b"weights"
    assert not (tmp_path / "build").exists()
