"""The runtime's requirements as pip resolves them on a Raspberry Pi, read from pyproject.toml.

One reader for the arm64 check (which installs them into an emulated Pi) and the wheel
check (which only resolves them): core ``dependencies`` + the ``runtime`` extra, markers
evaluated for the Pi's platform, and the pip flags that select that platform's wheels.
"""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# Wheel platform tags pip may pick, per Pi OS architecture (most specific first).
PLATFORMS = {
    # LiteRT's aarch64 wheel is manylinux_2_27: with only 2_28 pip rejects it.
    "aarch64": (
        "manylinux_2_28_aarch64",
        "manylinux_2_27_aarch64",
        "manylinux2014_aarch64",
        "manylinux_2_17_aarch64",
    ),
    # Pi OS 32-bit bookworm has glibc 2.36; piwheels builds are tagged linux_armv7l.
    "armv7l": tuple(f"manylinux_2_{v}_armv7l" for v in range(36, 16, -1))
    + ("manylinux2014_armv7l", "linux_armv7l"),
}


def marker_env(machine: str, python: str) -> dict[str, str]:
    """PEP 508 marker environment of CPython ``python`` (major.minor) on a Linux ``machine``."""
    return {
        "implementation_name": "cpython",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
        "extra": "",
    }


def runtime_requirements(
    pyproject: Path = PYPROJECT,
    *,
    machine: str = "aarch64",
    python: str = "3.11",
    pins: dict[str, str] | None = None,
) -> list[str]:
    """Core + ``runtime`` requirements whose markers hold on ``machine``, markers dropped.

    ``pins`` maps a distribution name to a version (the host's); a requirement whose
    specifier allows that version is pinned to it, so both sides run the same releases.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    lines = list(project.get("dependencies", [])) + list(
        project.get("optional-dependencies", {}).get("runtime", [])
    )
    env = marker_env(machine, python)
    pins = {canonicalize_name(k): v for k, v in (pins or {}).items()}
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if canonicalize_name(req.name) == canonicalize_name(project.get("name", "")):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is not None and req.specifier.contains(version, prereleases=True):
            out.append(f"{req.name}=={version}")
        else:
            out.append(f"{req.name}{req.specifier}")
    return out


def pip_target_flags(python: str, machine: str = "aarch64") -> list[str]:
    """pip download/install flags that select binary wheels for CPython ``python`` on a Pi."""
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
             "--abi", "cp" + python.replace(".", "")]
    return flags + [arg for plat in PLATFORMS[machine] for arg in ("--platform", plat)]
