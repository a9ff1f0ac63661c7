# brainlit: the front door. `make demo` and `make test` are the quick start.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is installed first so the rest of the install does not pull another build.
# Without an NVIDIA GPU we take the CPU build: TORCH_SPEC resolves to it on machines whose
# pip is configured for it; elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRAS ?= dev
CAMCAN_ROOT ?=
ATLAS ?=
OUT ?= runs/camcan
QUICK ?=
DEMO_DIR ?= data/demo

.PHONY: install demo test test-all lint bench reproduce-camcan tensorboard clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(HAS_GPU),)
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
endif
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed  ## venv + brainlit with dev extras (CPU torch without a GPU)

demo: install  ## simulate the embedded cohort, run the whole pipeline, print the results table
	$(PY) -m brainlit.data.simulate $(DEMO_DIR)
	$(PY) -m brainlit experiment --root $(DEMO_DIR) --atlas $(DEMO_DIR)/atlas.nii.gz \
		--configs configs/demo --out runs/demo

test: install  ## fast test suite (slow and gpu tests skipped)
	$(PY) -m pytest -q

test-all: install  ## every test, slow and gpu included
	$(PY) -m pytest -q -m ""

lint: install
	$(VENV)/bin/ruff check brainlit tests benchmarks

bench: install  ## speed measurements (never part of the tests)
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_cache.py

reproduce-camcan: install  ## CAMCAN_ROOT=DIR [ATLAS=FILE] [OUT=runs/camcan] [QUICK=1]
	@test -n "$(CAMCAN_ROOT)" || { echo "Set CAMCAN_ROOT=/path/to/camcan (see README: Cam-CAN)"; exit 2; }
	$(PY) -m brainlit experiment --root $(CAMCAN_ROOT) $(if $(ATLAS),--atlas $(ATLAS)) \
		--configs configs/camcan --out $(OUT) $(if $(QUICK),--quick true)

tensorboard: install  ## open the logs of every run
	$(VENV)/bin/tensorboard --logdir runs

clean:
	rm -rf runs .pytest_cache
