"""tools.pi: the arm64 check's pure logic (the emulated run itself is `make arm64-check`) and
the Pi requirement reader shared with the wheel check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.pi import arm64_check as check
from tools.pi import arm64_compare as cmp
from tools.pi import arm64_root as root
from tools.pi import requirements

REPO = Path(__file__).resolve().parents[1]


def _rec(image: str, box: list[float], score: float, label: str = "cat", **extra: object) -> dict:
    return {"image": image, "box": box, "label": label, "score": score, "present": score >= 0.5,
            "latency_ms": 1.5, **extra}


def test_compare_accepts_small_int8_differences() -> None:
    x86 = [_rec("/a/1.png", [10, 10, 110, 110], 0.9000)]
    arm = [_rec("/elsewhere/1.png", [10.5, 10, 110, 110.5], 0.8906, latency_ms=40.0)]
    (row,) = cmp.compare(x86, arm, model="m.tflite", target="pi5")
    assert row.ok, row.problems
    assert row.iou == pytest.approx(0.99, abs=0.01)
    assert row.arm64_ms_emulated == 40.0 and row.x86_ms == 1.5


@pytest.mark.parametrize(
    ("arm", "problem"),
    [
        (_rec("1.png", [10, 10, 110, 110], 0.9, label="dog"), "label"),
        (_rec("1.png", [10, 10, 100, 100], 0.9), "IoU"),  # IoU 0.81
        (_rec("1.png", [10, 10, 110, 110], 0.8), "score differs"),
        (_rec("1.png", [10, 10, 110, 110], 0.3), "score differs"),  # and present flips
        ({"image": "1.png", "error": "cannot decode image"}, "arm64 error"),
    ],
)
def test_compare_flags_each_kind_of_mismatch(arm: dict, problem: str) -> None:
    (row,) = cmp.compare([_rec("1.png", [10, 10, 110, 110], 0.9)], [arm], model="m", target="pi4")
    assert not row.ok
    assert any(problem in p for p in row.problems), row.problems


def test_compare_reports_images_missing_on_either_side() -> None:
    rows = cmp.compare([_rec("1.png", [0, 0, 1, 1], 0.9)], [_rec("2.png", [0, 0, 1, 1], 0.9)],
                         model="m", target="pi5")
    assert sorted(p for r in rows for p in r.problems) == ["no arm64 result", "no x86 result"]


def test_presence_flip_within_score_tolerance_is_not_a_mismatch() -> None:
    rows = cmp.compare([_rec("1.png", [0, 0, 9, 9], 0.501)], [_rec("1.png", [0, 0, 9, 9], 0.497)],
                       model="m", target="pi5")
    assert rows[0].ok


def test_tolerances_are_parameters() -> None:
    x86, arm = [_rec("1.png", [10, 10, 110, 110], 0.9)], [_rec("1.png", [10, 10, 100, 100], 0.8)]
    assert not cmp.compare(x86, arm, model="m", target="pi5")[0].ok
    assert cmp.compare(x86, arm, model="m", target="pi5", iou_min=0.8, score_tol=0.11)[0].ok


def test_emulated_timings_are_marked_in_table_json_and_markdown() -> None:
    rows = cmp.compare([_rec("1.png", [0, 0, 9, 9], 0.9)], [_rec("1.png", [0, 0, 9, 9], 0.9)],
                         model="m", target="pi5")
    table = cmp.render_table(rows, "m")
    assert any("EMULATED" in str(c.header) for c in table.columns)
    assert "not a speed figure" in str(table.caption)
    wrapped = cmp.mark_emulated({"cells": [{"latency": {"p50": 12.0}}]})
    assert wrapped["emulated"] is True and "not a speed figure" in wrapped["timing_note"]
    assert "arm64_ms_emulated" in json.dumps([r.__dict__ for r in rows])
    assert "| m | pi5 | 1.png | cat / cat |" in cmp.markdown_table(rows)


def test_runtime_requirements_for_aarch64_drop_armv7_only_and_pin_host_versions(
        tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1.26,<3"]\n'
        '[project.optional-dependencies]\nruntime = [\n'
        '  "onnxruntime>=1.20; platform_machine != \'armv7l\'",\n'
        '  "tflite-runtime>=2.14; platform_machine == \'armv7l\'",\n'
        '  "tensorflow; platform_machine == \'x86_64\'",\n]\n')
    reqs = requirements.runtime_requirements
    assert reqs(pyproject) == ["numpy<3,>=1.26", "onnxruntime>=1.20"]
    pinned = reqs(pyproject, pins={"numpy": "2.1.0", "onnxruntime": "1.10"})
    assert pinned == ["numpy==2.1.0", "onnxruntime>=1.20"]  # 1.10 is outside the specifier
    assert reqs(pyproject, machine="armv7l") == ["numpy<3,>=1.26", "tflite-runtime>=2.14"]


def test_project_runtime_requirements_have_no_tensorflow() -> None:
    for machine in requirements.PLATFORMS:
        reqs = requirements.runtime_requirements(REPO / "pyproject.toml", machine=machine)
        assert reqs and not any(
            r.lower().startswith(("tensorflow", "keras", "tf2onnx")) for r in reqs
        )


def test_parse_apt_simulation() -> None:
    text = ("NOTE: This is only a simulation!\nInst libc6 (2.36-9 Debian:12/stable [arm64])\n"
            "Inst python3.11 (3.11.2-6 Debian:12/stable [arm64])\nConf libc6 (2.36-9)\n")
    assert root.parse_apt_simulation(text) == ["libc6", "python3.11"]


@pytest.mark.parametrize("name", sorted(root.CPUS))
def test_cpuinfo_is_arm_and_matches_the_qemu_cpu(name: str) -> None:
    cpu = root.get_cpu(name)
    text = root.cpuinfo_text(cpu, cores=4)
    assert text.count("processor\t:") == 4
    assert "CPU implementer\t: 0x41" in text and f"CPU part\t: {cpu.part}" in text
    assert ("asimddp" in text) == (cpu.qemu_cpu == "cortex-a76")  # dotprod: A76 yes, A72 no


def test_unknown_cpu_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="pi5"):
        root.get_cpu("pi2")


def test_sources_list_is_bookworm_arm64_signed() -> None:
    text = root.sources_list("bookworm")
    assert text.count("deb [arch=arm64 signed-by=") == 3 and "bookworm-security" in text


def test_resolve_models_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="make models"):
        check.resolve_models([str(tmp_path / "missing.tflite")], REPO)
    with pytest.raises(ValueError, match="no .tflite"):
        check.resolve_models([str(tmp_path)], REPO)
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "b.txt").write_text("x")
    assert [p.name for p in check.resolve_models([str(tmp_path)], REPO)] == ["a.onnx"]


def test_cli_bad_flags_exit_2() -> None:
    assert check.main(["--cpus", "pi3", "--models", "x.tflite"]) == 2
    assert check.main(["--models", "/nonexistent/model.tflite"]) == 2


def test_make_images_is_deterministic_and_decodable(tmp_path: Path) -> None:
    import cv2

    first = check.make_images(tmp_path / "a")
    second = check.make_images(tmp_path / "b")
    assert len(first) == len(check.IMAGES) and {p.suffix for p in first} == {".png", ".jpg"}
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
        image = cv2.imread(str(a))
        assert image is not None and image.shape[2] == 3


def test_latency_table_marks_arm64_cells_emulated() -> None:
    cell = {"variant": "m.tflite", "backend": "ai_edge_litert", "threads": 4, "status": "ok",
            "latency_ms": {"p50": 12.5}}
    report = {"latency": {"x86": {"cells": [cell]},
                          "arm64": {"pi5 bookworm": cmp.mark_emulated({"cells": [cell]})}}}
    table = cmp.latency_table(report)
    assert table.row_count == 2
    assert [c for c in table.columns if c.header == "run"][0]._cells == [
        "x86", "arm64 pi5 bookworm (EMULATED)"]


@pytest.mark.parametrize("name", sorted(root.USERLANDS))
def test_userland_requirements_resolve_for_its_python(name: str) -> None:
    userland = root.get_userland(name)
    assert requirements.runtime_requirements(REPO / "pyproject.toml", python=userland.python)
    flags = requirements.pip_target_flags(userland.python)
    assert flags[flags.index("--abi") + 1] == "cp" + userland.python.replace(".", "")
    assert "manylinux_2_27_aarch64" in flags  # LiteRT's aarch64 wheel tag
    with pytest.raises(ValueError, match="bookworm"):
        root.get_userland("buster")


def test_install_app_copies_runtime_and_models_with_sidecars(tmp_path: Path) -> None:
    repo, rootdir = tmp_path / "repo", tmp_path / "root"
    for name in root.APP_DIRS:
        (repo / name / "__pycache__").mkdir(parents=True)
        (repo / name / "__init__.py").write_text("")
        (repo / name / "__pycache__" / "x.pyc").write_bytes(b"")
    (tmp_path / "m.tflite").write_bytes(b"model")
    (tmp_path / "m.json").write_text("{}")
    app, models = root.install_app(rootdir, repo, [tmp_path / "m.tflite"])
    assert models == [app / "models" / "m.tflite"] and (app / "models" / "m.json").exists()
    assert (app / "runtime" / "__init__.py").exists()
    assert not (app / "runtime" / "__pycache__").exists()


def test_guest_board_writes_cpuinfo_and_a_launcher_for_subprocesses(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    guest = root.Guest(Path("/usr/bin/qemu-aarch64-static"), root.get_userland("bookworm"),
                       tmp_path, tmp_path / "site", tmp_path / "app", [])
    guest.set_board(root.get_cpu("pi4"))
    assert "0xd08" in (tmp_path / "proc/cpuinfo").read_text()
    script = guest.launcher.read_text()
    assert guest.launcher.name == "python3.11-qemu" and os.access(guest.launcher, os.X_OK)
    assert "-cpu cortex-a72" in script and f"-0 {guest.launcher}" in script
    assert script.rstrip().endswith('"$@"')
    env = guest.env()
    assert env["PYTHONPATH"].split(":") == [str(guest.app), str(guest.site)]
    assert not any(k.startswith("VIRTUAL_ENV") for k in env)
