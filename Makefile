# Two commands on a fresh machine: `make demo` (install, train the demo model, export it)
# and `make test` (install, run the tests). Everything lives in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast models arm64-check clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The default int8 TFLite and int8 ONNX models, as a Pi 5 (Cortex-A76) and a Pi 4
# (Cortex-A72), on Debian bookworm and trixie arm64 userlands, against x86.
arm64-check: $(STAMP)
	$(BIN)/python -m benchmarks.arm64_check --models models/cat_int8.tflite models/cat_int8.onnx \
		--cpus pi5,pi4 --out results/arm64_check.json --markdown results/arm64_check.md

models: $(STAMP)
	$(DEMO_TRAIN)
	$(BIN)/python -m export.make_models --run runs/demo --out models

clean:
	rm -rf runs build *.egg-info
