"""Check that `pip install ".[runtime]"` finds wheels on a Raspberry Pi, from this machine.

    python -m tools.pi.wheels            # Pi OS 64-bit (aarch64) and 32-bit (armv7l)

The runtime's requirements are read from pyproject.toml (core + the ``runtime`` extra),
their markers evaluated for the target, and ``pip download --only-binary=:all:`` resolves
them with the target's platform tags into a temporary folder. A table lists every
package of the resolution with its wheel; for armv7l it also shows which requirement has
no wheel on the index (and whether piwheels, Pi OS's default extra index, is reachable).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from runtime.atomic import scratch_dir
from tools.pi.requirements import pip_target_flags, runtime_requirements

PYTHON = "3.11"  # Raspberry Pi OS bookworm
PIWHEELS = "https://www.piwheels.org/simple"


def pip_download(
    reqs: list[str],
    machine: str,
    dest: Path,
    index: str | None = None,
    no_deps: bool = False,
) -> subprocess.CompletedProcess:
    """``pip download`` of the wheels of ``reqs`` for a Pi of ``machine`` into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", *pip_target_flags(PYTHON, machine),
           "-d", str(dest), "--progress-bar", "off", "--timeout", "30"]
    if index:
        cmd += ["--extra-index-url", index]
    if no_deps:
        cmd.append("--no-deps")
    return subprocess.run(cmd + reqs, capture_output=True, text=True)


def wheel_rows(folder: Path) -> list[tuple[str, str, str]]:
    rows = []
    for whl in sorted(folder.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        rows.append((name.replace("_", "-").lower(), version, whl.name))
    return rows


def _why(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    text = lines[0] if lines else (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return re.sub(r"\s+", " ", text)[:140]


def check_aarch64(work: Path) -> bool:
    reqs = runtime_requirements(machine="aarch64", python=PYTHON)
    dest = work / "aarch64"
    proc = pip_download(reqs, "aarch64", dest)
    print(f"## Raspberry Pi OS 64-bit: manylinux_2_27_aarch64, CPython {PYTHON}\n")
    print(f"Requirements (pyproject core + [runtime]): {', '.join(reqs)}\n")
    if proc.returncode != 0:
        print(f"**Resolution failed**: {_why(proc)}\n")
        return False
    print("| package | version | wheel |\n|---|---|---|")
    for name, version, file in wheel_rows(dest):
        print(f"| {name} | {version} | `{file}` |")
    print(f"\nEvery dependency resolved to a wheel ({len(wheel_rows(dest))} wheels, no sdists).\n")
    return True


def check_armv7l(work: Path, piwheels: bool) -> None:
    print(f"## Raspberry Pi OS 32-bit: armv7l, CPython {PYTHON}\n")
    reqs = runtime_requirements(machine="armv7l", python=PYTHON)
    extra = ["onnxruntime", "ai-edge-litert"]  # excluded by markers: shown to document why
    print("| requirement | PyPI wheel (armv7l) |" + (" piwheels |" if piwheels else ""))
    print("|---|---|" + ("---|" if piwheels else ""))
    for req in reqs + extra:
        cells = []
        for index in [None] + ([PIWHEELS] if piwheels else []):
            dest = work / "armv7l" / re.sub(r"\W", "_", req) / ("piwheels" if index else "pypi")
            proc = pip_download([req], "armv7l", dest, index=index, no_deps=True)
            files = [f for _, _, f in wheel_rows(dest)]
            cells.append(
                f"`{files[0]}`" if proc.returncode == 0 and files else f"none ({_why(proc)})"
            )
        note = " (not a requirement on armv7l)" if req in extra else ""
        print(f"| {req}{note} | " + " | ".join(cells) + " |")
    print()


def piwheels_reachable() -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(PIWHEELS + "/numpy/", timeout=10).read(100)
        return True
    except Exception:  # offline, DNS, proxy: all mean "cannot check here"
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.pi.wheels", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--no-armv7l", action="store_true", help="only check 64-bit Pi OS")
    args = parser.parse_args(argv)
    with scratch_dir("pi-wheels") as tmp:
        ok = check_aarch64(tmp)
        if not args.no_armv7l:
            reach = piwheels_reachable()
            if not reach:
                print(f"(piwheels, {PIWHEELS}, is not reachable from here: only PyPI is checked)\n")
            check_armv7l(tmp, reach)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
