"""Raspberry Pi tooling for CI and maintainers (not installed, not a benchmark).

    python -m tools.pi.arm64_check   # the runtime on emulated Pi 5 / Pi 4 arm64 vs x86
    python -m tools.pi.wheels        # which wheels `pip install ".[runtime]"` finds on a Pi

``arm64_root`` builds the emulated Debian arm64 userland, ``arm64_compare`` compares the
results, ``requirements`` reads the runtime's requirements for a Pi's platform.
"""
