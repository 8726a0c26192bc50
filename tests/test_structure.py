"""The shape of the code base: one image reader, no import cycles, small export modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools import import_cycles

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "train", "export", "runtime", "benchmarks", "tools")
DECODERS = re.compile(r"\b(imdecode|imread|Image\.open)\b")


def _sources(*packages: str) -> list[Path]:
    return [p for pkg in packages for p in sorted((REPO / pkg).rglob("*.py"))]


def test_no_image_is_decoded_outside_the_one_reader():
    """data/images.py holds the one orientation and size policy; a second decoder would not."""
    reader = REPO / "data" / "images.py"
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in _sources(*PACKAGES)
        if path != reader
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if DECODERS.search(line)
    ]
    assert found == [], "decode images with data.images.read_image:\n" + "\n".join(found)
    assert DECODERS.search(reader.read_text())  # the pattern still matches the real reader


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_among_a_packages_modules(package):
    assert import_cycles.cycles(package) == []


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\nif __name__ == '__main__':\n    import pkg.b\n")
    assert import_cycles.cycles("pkg", tmp_path) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("if __name__ == '__main__':\n    import pkg.a\n")  # entry only
    assert import_cycles.cycles("pkg", tmp_path) == []


def test_export_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in _sources("export")}
    assert max(sizes.values()) <= 400, sizes
