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
DEMO_ENSEMBLE ?= 1
DEMO_REPEATS ?= 2
DYN_DIR ?= data/demo-dynamics
DYN_VOLUMES ?= 300
DYN_REPEATS ?= 1
DYN_ENSEMBLE ?= 1
CAP_DIR ?= data/capability
CAP_SEED ?= 0
# gpu-check runs on a GPU machine's own python3 (no venv, no internet); DRY_RUN=1 rehearses here.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
DRY_RUN ?=
GPU_CHECK_OUT ?=
# What the GPU machine (Python 3.12, torch, lightning, h5py, scikit-learn ... installed) lacks of
# brainlit's runtime dependencies and theirs, as wheels; plus mamba-ssm's source to compile there
# (its metadata step imports torch, so GPU_PYTHON needs torch).
GPU_WHEELS ?= jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 \
	nilearn==0.14.1 nibabel==5.4.2
GPU_PURE_SDISTS ?= neuroCombat==0.2.12  # source only on PyPI: built into a wheel here
MAMBA_SDIST ?= mamba-ssm==2.3.2.post1

.PHONY: install demo demo-dynamics capability label-efficiency test test-all lint bench gpu-check gpu-wheels reproduce-camcan tensorboard clean

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
		--configs configs/demo --out runs/demo --ensemble $(DEMO_ENSEMBLE) --repeats $(DEMO_REPEATS)

demo-dynamics: install  ## the positive control: a cohort whose age and cognition also live in FC dynamics
	$(PY) -m brainlit.data.simulate $(DYN_DIR) --dynamics switching --n-volumes $(DYN_VOLUMES)
	$(PY) -m brainlit experiment --root $(DYN_DIR) --atlas $(DYN_DIR)/atlas.nii.gz \
		--configs configs/demo --out runs/demo-dynamics --ensemble $(DYN_ENSEMBLE) --repeats $(DYN_REPEATS)

capability: install  ## can the network read FC switching speed where windowed FC shows it? (a toy, docs/dynamics.md)
	$(PY) benchmarks/dynamics_capability.py $(CAP_DIR) --seed $(CAP_SEED)
	$(PY) -m brainlit experiment --root $(CAP_DIR) --data.layout arrays --configs configs/capability \
		--out runs/capability --final_model false

LE_OUT ?= runs/label_efficiency$(if $(QUICK),_quick)

label-efficiency: install  ## does pretraining on a corpus pay? MAE against labelled n (hours; QUICK=1: minutes)
	$(PY) benchmarks/label_efficiency.py $(LE_OUT) $(if $(QUICK),--quick)

test: install  ## fast test suite (slow and gpu tests skipped)
	$(PY) -m pytest -q

test-all: install  ## every test, slow and gpu included
	$(PY) -m pytest -q -m ""

lint: install
	$(VENV)/bin/ruff check brainlit tests benchmarks

BENCH_CACHE ?= runs/demo/cache.h5
MEMORY_BUDGET ?= 8GiB

bench: install  ## speed and memory tables, and what dynamics add to FC, in benchmarks/results/ (never part of the tests)
	$(PY) benchmarks/bench_models.py $(if $(QUICK),--quick)
	$(PY) benchmarks/bench_memory.py --memory-budget $(MEMORY_BUDGET) $(if $(QUICK),--quick)
	$(PY) benchmarks/bench_cache.py $(if $(QUICK),--subjects 2 --jobs 1)
	$(PY) benchmarks/dynamics_probe.py $(if $(QUICK),--subjects 30 --volumes 150)
	$(PY) benchmarks/dynamics_reach.py $(if $(QUICK),--subjects 30 --volumes 150 --repeats 1)
	@if [ -f $(BENCH_CACHE) ]; then $(PY) benchmarks/beyond_fc.py $(BENCH_CACHE) $(if $(QUICK),--repeats 1); \
	else echo "beyond_fc: no $(BENCH_CACHE); run make demo first or pass BENCH_CACHE=FILE"; fi

gpu-check:  ## on a GPU machine: GPU tests, benchmarks, bf16 demo fit -> $$OUT/gpu_check.json (DRY_RUN=1: CPU rehearsal)
	$(GPU_PYTHON) benchmarks/gpu_check.py $(if $(DRY_RUN),--dry-run) $(if $(GPU_CHECK_OUT),--out $(GPU_CHECK_OUT))

gpu-wheels:  ## fill .whl/ with what the GPU machine lacks (run where there is internet)
	rm -rf .whl && mkdir -p .whl/src
	$(GPU_PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any -d .whl $(GPU_WHEELS)
	$(GPU_PYTHON) -m pip wheel -q --no-deps -w .whl $(GPU_PURE_SDISTS)
	-MAMBA_SKIP_CUDA_BUILD=TRUE $(GPU_PYTHON) -m pip download -q --no-deps --no-binary=:all: --no-build-isolation \
		-d .whl/src $(MAMBA_SDIST)
	@ls .whl .whl/src

reproduce-camcan: install  ## CAMCAN_ROOT=DIR [ATLAS=FILE] [OUT=runs/camcan] [QUICK=1]
	@test -n "$(CAMCAN_ROOT)" || { echo "Set CAMCAN_ROOT=/path/to/camcan (see README: Cam-CAN)"; exit 2; }
	$(PY) -m brainlit experiment --root $(CAMCAN_ROOT) $(if $(ATLAS),--atlas $(ATLAS)) \
		--configs configs/camcan --out $(OUT) $(if $(QUICK),--quick true)

tensorboard: install  ## open the logs of every run
	$(VENV)/bin/tensorboard --logdir runs

clean:
	rm -rf runs .pytest_cache
