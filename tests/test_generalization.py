"""benchmarks.generalization: recipes with extra training flags and several seeds, the
group-split proxy, and the spread table; bad flags are refused before anything trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from benchmarks.generalization import main
from runtime.models import MODELS_DIR

FACE_MODEL = MODELS_DIR / "face_int8.tflite"
TINY = "--epochs 1 --steps-per-epoch 2 --batch-size 4 --train-size 8 --image-size 32 --alpha 0.5"


def faces_folder(root: Path, write_image: Callable[..., Path], n: int = 24) -> Path:
    """A CSV folder of n photos with one bright square each, in two groups (a_*, b_*)."""
    rng = np.random.default_rng(5)
    rows = ["image,bbox,label"]
    for i in range(n):
        image = rng.integers(0, 90, (96, 128, 3), dtype=np.uint8)
        x, y, side = int(rng.integers(0, 70)), int(rng.integers(0, 40)), int(rng.integers(20, 50))
        image[y : y + side, x : x + side] = (230, 190, 160)
        name = f"{'ab'[i % 3 == 0]}_{i:02d}.png"
        write_image(root / "images" / name, image)
        rows.append(f'images/{name},"[{x}, {y}, {x + side}, {y + side}]",face')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_recipe_flags_seeds_and_groups_end_to_end(tmp_path: Path, write_image: Callable[..., Path],
                                                   capsys: pytest.CaptureFixture) -> None:
    faces = faces_folder(tmp_path / "faces", write_image)
    out = tmp_path / "out"
    code = main(["--faces-dir", str(faces), "--preset", "real", "--train-flags", TINY,
                 "--label", "tiny", "--seeds", "0,1", "--faces-groups", "([ab])_",
                 "--default-face-model", str(FACE_MODEL), "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    doc = json.loads((out / "generalization.json").read_text())
    runs = {(r["dataset"], r["seed"]): r for r in doc["runs"]}
    assert set(runs) == {("faces", 0), ("faces", 1), ("faces (a only)", 0), ("faces (a only)", 1)}
    # The flags reached training: the runs are the tiny model, one epoch of two steps.
    for r in runs.values():
        config = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert config["model"]["image_size"] == 32 and config["training"]["epochs"] == 1
        assert config["preset"] == "real" and config["data"]["paste"] == 0.7  # the preset stays
        assert config["data"]["seed"] == r["seed"] and r["recipe"] == "tiny"
    assert {Path(r["run_dir"]).name for r in runs.values()} == {
        "faces-tiny", "faces-tiny-s1", "faces-tiny-a", "faces-tiny-a-s1"}
    group = runs[("faces (a only)", 0)]["sets"]
    assert group["other real group"]["images"] == 8  # i % 3 == 0 of 24 are group b
    assert {"own test half", "faces-on-scenes test", "portraits"} <= set(group)
    assert set(doc["haar"]) == {"own test half", "faces-on-scenes test", "portraits",
                                "real faces (all)"}
    # The default face model and the cascade on every real face photo (24, none a negative).
    [face] = doc["default_models"]
    assert face["dataset"] == "faces" and set(face["sets"]) == {"real faces (all)"}
    assert face["sets"]["real faces (all)"]["images"] == doc["haar"]["real faces (all)"]["images"] == 24
    md = (out / "generalization.md").read_text()
    assert "| faces | tiny (seed 1) |" in md
    assert "| faces | default model (after: face_int8.tflite) | - | real faces (all) | 24 |" in md
    # The spread over the two seeds: one row per dataset and set, its mean inside its range.
    spread = [line for line in md.splitlines() if " | tiny | " in line]
    assert len(spread) == 3 + 4  # own, faces-on-scenes, portraits; + the group runs' four sets
    for line in spread:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == "2"
        lo, hi = (float(v) for v in cells[5].split("-"))
        assert lo <= float(cells[4]) <= hi

    # Rerunning reuses the finished runs (no training): same figures.
    assert main(["--faces-dir", str(faces), "--preset", "real", "--train-flags", TINY,
                 "--label", "tiny", "--seeds", "0,1", "--out", str(out)]) == 0
    again = json.loads((out / "generalization.json").read_text())
    assert again["runs"][0]["sets"] == doc["runs"][0]["sets"]


def _refused_before_training(tmp_path: Path, write_image: Callable[..., Path],
                             capsys: pytest.CaptureFixture, *flags: str) -> Any:
    """Run the benchmark on six faces with ``flags``: exit 2, no traceback, no --out folder."""
    faces = faces_folder(tmp_path / "faces", write_image, n=6)
    assert main(["--faces-dir", str(faces), *flags, "--out", str(tmp_path / "out")]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert not (tmp_path / "out").exists()
    return out


@pytest.mark.parametrize("flags, message", [
    ("--seed 3", "--train-flags may not set --seed"),
    ("--epochs x", "--train-flags is not valid for `python -m train`"),
    ("--no-such-flag 1", "--train-flags is not valid for `python -m train`"),
    ("--paste-opt nope", "--train-flags: --paste-opt 'nope' is not KEY=VALUE"),
    ("--paste '0.5", "--train-flags: No closing quotation"),
])
def test_bad_recipe_flags_exit_2_before_training(tmp_path: Path, write_image: Callable[..., Path],
                                                 capsys: pytest.CaptureFixture, flags: str,
                                                 message: str) -> None:
    out = _refused_before_training(tmp_path, write_image, capsys, "--train-flags", flags)
    assert message in " ".join((out.out + out.err).split())


@pytest.mark.parametrize("where", ["faces", "faces/out", "."])
def test_an_out_folder_overlapping_the_data_is_refused(tmp_path: Path, write_image: Callable[..., Path],
                                                       capsys: pytest.CaptureFixture, where: str) -> None:
    faces = faces_folder(tmp_path / "faces", write_image, n=6)
    before = sorted(p.name for p in faces.rglob("*"))
    assert main(["--faces-dir", str(faces), "--out", str(tmp_path / where)]) == 2
    out = capsys.readouterr()
    assert "--out" in out.out and "overlaps --faces-dir" in " ".join(out.out.split())
    assert "Traceback" not in out.out + out.err
    assert sorted(p.name for p in faces.rglob("*")) == before  # nothing written or removed


@pytest.mark.parametrize("pattern, message", [("([0-9]+", "is not a regular expression"),
                                              ("[0-9]+", "needs a group in parentheses")])
def test_a_bad_group_pattern_is_refused_before_training(tmp_path: Path, write_image: Callable[..., Path],
                                                        capsys: pytest.CaptureFixture, pattern: str,
                                                        message: str) -> None:
    out = _refused_before_training(tmp_path, write_image, capsys, "--faces-groups", pattern)
    assert message in " ".join(out.out.split())


def test_seeds_must_be_distinct_integers(capsys: pytest.CaptureFixture) -> None:
    for bad in ("1,1", "a,b", "-1"):
        with pytest.raises(SystemExit) as exit_:
            main(["--seeds", bad])
        assert exit_.value.code == 2
    assert "--seeds" in capsys.readouterr().err
