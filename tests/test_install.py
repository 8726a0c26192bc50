"""The package installs like a package: a built wheel, a fresh venv, another folder."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_NOT_SOURCE = (".git", ".venv*", "runs", "results", ".cache", "build", "dist", "*.egg-info",
               "__pycache__", ".pytest_cache")


def _run(cmd: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd[:4]} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_runtime_infer_finds_its_default_model(tmp_path, write_image):
    """Non-editable install: the default models are package data, found from any folder,
    and building the wheel raises no setuptools deprecation warning (SPDX license)."""
    from tools.pi.requirements import runtime_requirements

    src, dist = tmp_path / "src", tmp_path / "dist"  # a copy: the build writes into its tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", dist, src], src)
    assert "SetuptoolsDeprecationWarning" not in build.stdout + build.stderr
    (wheel,) = dist.glob("edgeloc-*.whl")
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps = runtime_requirements(machine=platform.machine(), python=version)
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *deps], tmp_path)
    _run([python, "-m", "pip", "install", "-q", "--no-deps", wheel], tmp_path)

    elsewhere = tmp_path / "elsewhere"
    photo = write_image(elsewhere / "photo.jpg", _cat_scene())
    done = _run([python, "-m", "runtime.infer", "photo.jpg"], elsewhere, timeout=120)
    (line,) = done.stdout.strip().splitlines()
    record = json.loads(line)
    assert record["image"].endswith("photo.jpg") and record["width"] == 320, record
    assert len(record["box"]) == 4 and record["label"] in ("cat", "none")
    assert "XNNPACK" not in done.stderr  # the engine's start-up line is not shown
    where = _run([python, "-c", "import runtime; print(runtime.__file__)"], elsewhere).stdout
    assert "site-packages" in where and str(REPO) not in where  # the installed copy ran
    tools = subprocess.run([python, "-c", "import tools"], cwd=elsewhere, capture_output=True)
    assert tools.returncode != 0  # CI tooling is not installed
    assert photo.exists()


def _cat_scene():
    import cv2
    import numpy as np

    from data.assets import load_image

    scene = np.full((240, 320, 3), 90, np.uint8)
    scene[40:200, 60:300] = cv2.resize(load_image("chelsea"), (240, 160))  # (160, 240, 3)
    return scene
