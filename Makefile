# Two commands on a fresh machine: `make demo` (install, train the demo model, export it)
# and `make test` (install, run the tests). Everything lives in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LEGACY := .venv-tflite-runtime
LEGACY_STAMP := $(LEGACY)/.installed

.PHONY: help install demo test test-fast models arm64-check gpu-check clean

# Every path below is relative to the repository root (`make -f path/Makefile` from another
# folder would build a venv there and fail on a missing pyproject.toml).
ifeq ($(wildcard pyproject.toml),)
$(error run make in the edgeloc folder (make -C path/to/edgeloc TARGET), not from $(CURDIR))
endif

# A bare `make` lists the targets instead of installing the training stack.
help:
	@echo "make demo         install .venv, train the demo model, export it (TFLite, ONNX)"
	@echo "make test         install .venv (and $(LEGACY)), run the test suite"
	@echo "make test-fast    the same without the slow end-to-end tests"
	@echo "make install      only create .venv with .[dev] (re-run when pyproject.toml changes)"
	@echo "make models       re-create the shipped default models in $(MODELS)"
	@echo "make arm64-check  the default models on emulated Raspberry Pi OS 64-bit"
	@echo "make gpu-check    train and benchmark on an NVIDIA GPU (.venv-gpu)"
	@echo "make clean        remove build outputs, $(LEGACY) and .venv-gpu (never runs/)"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Rerunning the training command resumes an interrupted run (no finished epoch is lost)
# and leaves a finished one alone (a few seconds), so both targets always call it.
DEMO_TRAIN := $(BIN)/python -m train --preset demo --out runs/demo

demo: $(STAMP)
	$(DEMO_TRAIN)
	$(BIN)/python -m export --model runs/demo --formats tflite,onnx --quantize none,int8

test: $(STAMP) $(LEGACY_STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) $(LEGACY_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# tflite-runtime, the engine 32-bit Pi OS gets (its last release, 2.14, needs NumPy 1.x and
# Python <= 3.11), in a side venv so its tests run against the real package. Where pip has
# no wheel for this Python, the venv is left out and those tests skip, saying so.
# Python 3.12+ is known to have none: skipped without a venv or a download on every run.
$(LEGACY_STAMP): pyproject.toml
	@newer=$$($(PY) -c 'import sys; print(sys.version_info >= (3, 12))') || exit 1; \
	if [ "$$newer" = True ]; then \
		echo "note: tflite-runtime 2.14 has no wheel for $$($(PY) -V); its tests will skip"; \
	elif $(PY) -m venv $(LEGACY) && \
		$(LEGACY)/bin/pip install -q -e . "tflite-runtime>=2.14,<2.15" "numpy<2"; then \
		touch $@; \
	else \
		echo "note: could not install tflite-runtime 2.14 (pip's reason above); its tests will skip"; \
		rm -rf $(LEGACY); \
	fi

# The default int8 TFLite and int8 ONNX models, as a Pi 5 (Cortex-A76) and a Pi 4
# (Cortex-A72), on Debian bookworm and trixie arm64 userlands, against x86.
# tools/pi is CI tooling, not part of the package (see tools/pi/__init__.py).
MODELS := runtime/models

arm64-check: $(STAMP)
	$(BIN)/python -m tools.pi.arm64_check --models $(MODELS)/cat_int8.tflite $(MODELS)/cat_int8.onnx \
		--cpus pi5,pi4 --out results/arm64_check.json --markdown results/arm64_check.md

# On an NVIDIA GPU box: installs the gpu extra into .venv-gpu, trains 2 short mirrored epochs
# with and without mixed precision, runs the latency matrix on CUDA/TensorRT/TensorFlow GPU and
# writes results/gpu-check/gpu_check.{json,md}. Without a GPU it stops at once (exit 2).
gpu-check:
	$(PY) -m benchmarks.gpu_check --out results/gpu-check --venv .venv-gpu

# The default models ship inside the runtime package (package data), found after any install.
# They are not the demo's export: the `cat` preset trains the same model for real cat photos
# (whole-cat figures and cut-outs made from the built-in cat photo; BENCHMARKS.md section 7).
models: $(STAMP)
	$(BIN)/python -m train --preset cat --out runs/cat
	$(BIN)/python -m export.make_models --run runs/cat --out $(MODELS)
	$(BIN)/python -m train --preset face --out runs/face
	$(BIN)/python -m export.make_models --run runs/face --out $(MODELS)

# Not runs/: it holds the user's trained runs (and make models' ~11-minute ones).
clean:
	rm -rf build dist *.egg-info $(LEGACY) .venv-gpu
