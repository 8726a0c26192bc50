"""Build and run an emulated Raspberry Pi OS 64-bit userland (Debian bookworm arm64).

The root is made of Debian's own arm64 packages (Python 3.11 and the C libraries it
needs, dependencies resolved by apt itself in a private state folder, then unpacked with
``dpkg -x``), plus the project's ``.[runtime]`` dependencies from their aarch64 wheels.
Programs run in it through ``qemu-aarch64-static -L ROOT`` (user-mode emulation; no
binfmt_misc, no root). Everything is cached under one folder, keyed by what it was
built from, so a second run does no network access at all.

Used by ``tools.pi.arm64_check``; timings measured here are emulated, never speed figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._fingerprint import library_versions
from tools.pi.requirements import PLATFORMS, pip_target_flags, runtime_requirements

log = logging.getLogger(__name__)

LIBS = ("libstdc++6", "libgcc-s1", "zlib1g")  # what the wheels need beyond python; apt adds the rest
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APP_DIRS = ("runtime", "data", "benchmarks")  # the project code a Pi user runs (with its models)


@dataclass(frozen=True)
class Userland:
    """A Debian release that a Raspberry Pi OS 64-bit image is built on.

    Attributes:
        suite: Debian codename.
        python: its ``python3`` version (major.minor).
        pi_os: the Raspberry Pi OS images built on it.
    """

    suite: str
    python: str
    pi_os: str


USERLANDS: dict[str, Userland] = {
    "bookworm": Userland("bookworm", "3.11", "Raspberry Pi OS 64-bit, 2023-10 to 2025-10 images"),
    "trixie": Userland("trixie", "3.13", "Raspberry Pi OS 64-bit, images since 2025-10"),
}


def get_userland(name: str) -> Userland:
    """Look up a userland by Debian codename."""
    if name not in USERLANDS:
        raise ValueError(f"unknown Debian suite {name!r}; valid: {', '.join(USERLANDS)}")
    return USERLANDS[name]


class ArmRootError(RuntimeError):
    """The emulated root could not be built or run (network, apt, pip or qemu)."""


@dataclass(frozen=True)
class CpuProfile:
    """One emulated board.

    Attributes:
        board: what it stands for.
        qemu_cpu: ``qemu -cpu`` model; it sets the instruction set the guest may use.
        variant, part, revision, features: the ``/proc/cpuinfo`` entries the guest reads.
    """

    board: str
    qemu_cpu: str
    variant: str
    part: str
    revision: int
    features: str


# The qemu CPU and /proc/cpuinfo must agree (XNNPACK picks kernels from cpuinfo: an A76
# cpuinfo on an A72 CPU dies of SIGILL). qemu's default "max" CPU runs kernels no Pi has, and
# under it (qemu 7.2) int8 TFLite boxes came out wrong (IoU 0.5 vs x86); Pi CPUs: bit-exact.
CPUS: dict[str, CpuProfile] = {
    "pi5": CpuProfile("Raspberry Pi 5 (Cortex-A76)", "cortex-a76", "0x4", "0xd0b", 1,
                      "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                      "asimdrdm lrcpc dcpop asimddp"),
    "pi4": CpuProfile("Raspberry Pi 4 (Cortex-A72)", "cortex-a72", "0x0", "0xd08", 3,
                      "fp asimd evtstrm crc32 cpuid"),
    "pi3": CpuProfile("Raspberry Pi 3 / Zero 2 W (Cortex-A53)", "cortex-a53", "0x0", "0xd03", 4,
                      "fp asimd evtstrm crc32 cpuid"),
}


def get_cpu(name: str) -> CpuProfile:
    """Look up a CPU profile by name."""
    if name not in CPUS:
        raise ValueError(f"unknown arm64 CPU profile {name!r}; valid: {', '.join(CPUS)}")
    return CPUS[name]


def cpuinfo_text(cpu: CpuProfile, cores: int = 4) -> str:
    """The ``/proc/cpuinfo`` of an ARM board (onnxruntime crashes on the host's x86 one)."""
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {cpu.features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {cpu.variant}\n"
        f"CPU part\t: {cpu.part}\nCPU revision\t: {cpu.revision}\n"
        for i in range(cores)
    ]
    return "\n".join(blocks) + "\n"


def parse_apt_simulation(text: str) -> list[str]:
    """Package names from ``apt-get -s install`` output (its ``Inst name (...)`` lines)."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("Inst ")]


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _stamp_ok(stamp: Path, key: str) -> bool:
    try:
        return json.loads(stamp.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _run(cmd: list[str], what: str, *, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a host command; on failure raise ArmRootError naming ``what`` with its last output."""
    log.debug("$ %s", " ".join(map(str, cmd)))
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ArmRootError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ArmRootError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise ArmRootError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def sources_list(suite: str, mirror: str = MIRROR) -> str:
    """apt sources for Debian ``suite`` arm64 (main, updates; security from Debian's own host)."""
    lines = [f"{mirror} {suite} main", f"{mirror} {suite}-updates main",
             f"{SECURITY_MIRROR} {suite}-security main"]
    return "".join(f"deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {line}\n" for line in lines)


def apt_options(cache: Path, suite: str, mirror: str) -> list[str]:
    """apt-get options for a private arm64 apt state under ``cache/apt`` (host apt untouched)."""
    apt = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()  # nothing installed: apt resolves the full dependency closure
    (apt / "sources.list").write_text(sources_list(suite, mirror))
    opts = {
        "APT::Architecture": "arm64", "APT::Architectures": "arm64",
        "Dir::State": apt, "Dir::State::Lists": apt / "lists", "Dir::State::status": apt / "status",
        "Dir::Cache": apt / "cache", "Dir::Etc::SourceList": apt / "sources.list",
        "Dir::Etc::SourceParts": apt / "sources.list.d", "Acquire::Languages": "none",
        "APT::Install-Recommends": "false",
    }
    if os.geteuid() == 0:  # apt's _apt user may not be able to write into the cache folder
        opts["APT::Sandbox::User"] = "root"
    return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]


def build_root(cache: Path, userland: Userland, *, mirror: str = MIRROR) -> Path:
    """Debian ``userland.suite`` arm64 with its Python unpacked in ``cache/root`` (cached)."""
    root, stamp = cache / "root", cache / "root.json"
    python = f"python{userland.python}"
    wanted = (python, *LIBS)
    key = _digest({"suite": userland.suite, "packages": wanted, "mirror": mirror})
    if _stamp_ok(stamp, key) and (root / "usr/bin" / python).exists():
        return root
    if not DEBIAN_KEYRING.exists():
        raise ArmRootError(f"{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring")
    opts = apt_options(cache, userland.suite, mirror)
    log.info("arm64 root: apt-get update (%s %s arm64)", mirror, userland.suite)
    _run(["apt-get", *opts, "--error-on=any", "update"],
         f"apt-get update for Debian {userland.suite} arm64 (is {mirror} reachable? the arm64 "
         "check needs Debian's package registry)", timeout=300)
    sim = _run(["apt-get", *opts, "-s", "install", *wanted],
               f"apt-get resolving {' '.join(wanted)} for arm64")
    packages = parse_apt_simulation(sim)
    if python not in packages:
        raise ArmRootError(f"apt did not resolve {python} for arm64:\n{sim[-800:]}")
    debs = cache / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    log.info("arm64 root: downloading %d Debian packages", len(packages))
    _run(["apt-get", *opts, "download", *packages], "apt-get download of arm64 packages",
         cwd=debs, timeout=600)
    shutil.rmtree(root, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    for top in ("bin", "sbin", "lib"):  # merged /usr: trixie packages ship only usr/lib etc.
        if not (root / top).exists() and (root / "usr" / top).is_dir():
            (root / top).symlink_to(f"usr/{top}")
    stamp.write_text(json.dumps({"key": key, "packages": sorted(p.name for p in debs.glob("*.deb"))},
                                indent=1))
    return root


def install_wheels(cache: Path, root: Path, requirements: list[str], python: str) -> Path:
    """The aarch64 wheels of ``requirements`` (and their dependencies) in ROOT/opt/edgeloc/site."""
    site, stamp = root / "opt/edgeloc/site", root / "opt/edgeloc/site.json"
    key = _digest({"requirements": sorted(requirements), "platforms": PLATFORMS["aarch64"],
                   "python": python})
    if _stamp_ok(stamp, key) and site.is_dir():
        return site
    wheels = cache / "wheels" / key
    if not (wheels / "complete").exists():
        shutil.rmtree(cache / "wheels", ignore_errors=True)
        wheels.mkdir(parents=True)
        log.info("arm64 wheels: pip download %s", " ".join(requirements))
        _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
              *pip_target_flags(python), "-d", str(wheels), *requirements],
             "pip download of the aarch64 wheels (is the package index reachable? every "
             "runtime dependency must have a manylinux aarch64 wheel)", timeout=600)
        (wheels / "complete").touch()
    shutil.rmtree(site, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "--no-index", "--no-deps", "--target", str(site), *pip_target_flags(python), *files],
         "pip install --target of the aarch64 wheels")
    stamp.write_text(json.dumps({"key": key, "wheels": [Path(f).name for f in files]}, indent=1))
    return site


def install_app(root: Path, repo: Path, models: list[Path]) -> tuple[Path, list[Path]]:
    """Copy the project's runtime code and ``models`` (+ contract sidecars) into the root.

    Returns the app folder and the models' paths inside it.
    """
    app = root / "opt/edgeloc/app"
    shutil.rmtree(app, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in APP_DIRS:
        shutil.copytree(repo / name, app / name, ignore=ignore)
    copied = []
    for model in models:
        (app / "models").mkdir(parents=True, exist_ok=True)
        for path in (model, model.with_suffix(".json")):
            if path.exists():
                shutil.copy2(path, app / "models" / path.name)
        copied.append(app / "models" / model.name)
    return app, copied


def find_qemu() -> Path:
    """The qemu-aarch64-static binary (Debian package qemu-user-static)."""
    found = shutil.which("qemu-aarch64-static")
    if found is None:
        raise ArmRootError("qemu-aarch64-static not found: install it with "
                           "`sudo apt-get install qemu-user-static`")
    return Path(found)


@dataclass
class Guest:
    """A ready emulated Pi: ``run(cpu, ["-m", "runtime.infer", ...])`` runs Python in it."""

    qemu: Path
    userland: Userland
    root: Path
    site: Path
    app: Path
    models: list[Path]  # the models' copies inside the root

    @property
    def python(self) -> Path:
        """The arm64 interpreter inside the root."""
        return self.root / "usr/bin" / f"python{self.userland.python}"

    @property
    def launcher(self) -> Path:
        """A host script that starts the emulated Python: the guest's ``sys.executable``."""
        return self.python.with_name(self.python.name + "-qemu")

    def command(self, cpu: CpuProfile, args: list[str]) -> list[str]:
        """The host command line that runs ``python ARGS`` on the emulated board."""
        return [str(self.qemu), "-cpu", cpu.qemu_cpu, "-L", str(self.root), "-0", str(self.launcher),
                str(self.python), *args]

    def set_board(self, cpu: CpuProfile) -> None:
        """Make the root look like ``cpu``: its /proc/cpuinfo and the launcher's qemu CPU.

        Without binfmt_misc the guest cannot exec an arm64 binary, so a Python that starts
        ``sys.executable`` (benchmarks.latency runs each cell in a subprocess) would fail;
        ``-0 LAUNCHER`` makes that a host script which starts qemu again, as binfmt would.
        """
        (self.root / "proc").mkdir(exist_ok=True)
        (self.root / "proc/cpuinfo").write_text(cpuinfo_text(cpu))
        self.launcher.write_text("#!/bin/sh\n# qemu launcher written by tools.pi.arm64_root\n"
                                 f'exec {shlex.join(self.command(cpu, []))} "$@"\n')
        self.launcher.chmod(0o755)

    def env(self) -> dict[str, str]:
        """A clean environment: nothing from the host's Python leaks in."""
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.app), "LANG": "C.UTF-8",
                "PYTHONPATH": f"{self.app}:{self.site}", "PYTHONNOUSERSITE": "1",
                "COLUMNS": "120", "TERM": "dumb"}

    def run(self, cpu: CpuProfile, args: list[str], *, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        """Run python with ``args`` on the emulated ``cpu`` (cwd = the app folder)."""
        self.set_board(cpu)
        cmd = self.command(cpu, args)
        log.debug("$ %s", " ".join(cmd))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.app, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:.0f} s")
        log.info("arm64 %s %s: %s (%.1f s emulated, exit %d)", self.userland.suite, cpu.qemu_cpu,
                 " ".join(args[:2]) if args[0] == "-m" else "probe", time.perf_counter() - t0,
                 proc.returncode)
        return proc


# Run first in each userland: the runtime's dependencies import, and TensorFlow is absent.
PROBE = """
import importlib.util, json, platform
import ai_edge_litert, cv2, numpy, onnxruntime
from benchmarks._fingerprint import library_versions
print(json.dumps({
    "machine": platform.machine(), "python": platform.python_version(),
    "libc": " ".join(platform.libc_ver()), "libraries": library_versions(),
    "tensorflow_importable": importlib.util.find_spec("tensorflow") is not None,
}))
"""


def prepare(cache: Path, repo: Path, models: list[Path], userland: Userland, *,
            mirror: str = MIRROR) -> Guest:
    """Build (or reuse) the root, the wheels and the app copy; return the runnable guest."""
    from packaging.requirements import Requirement

    if platform.machine() != "x86_64":
        log.warning("host is %s, not x86_64: this check is meant for x86 CI", platform.machine())
    qemu = find_qemu()
    cache = cache.resolve() / userland.suite  # apt and qemu need absolute paths
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = build_root(cache, userland, mirror=mirror)
    t1 = time.perf_counter()
    pyproject = repo.resolve() / "pyproject.toml"
    names = [Requirement(r).name for r in runtime_requirements(pyproject, python=userland.python)]
    requirements = runtime_requirements(
        pyproject, python=userland.python, pins=library_versions(names)
    )
    site = install_wheels(cache, root, requirements, userland.python)
    app, guest_models = install_app(root, repo.resolve(), models)
    log.info("arm64 %s ready: root %.1f s, wheels %.1f s", userland.suite, t1 - t0,
             time.perf_counter() - t1)
    return Guest(qemu, userland, root, site, app, guest_models)
