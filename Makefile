# Two commands for a fresh machine:
#   make demo   set up, prepare CIFAR-10, train a short default run, print images/sec
#   make test   set up, then lint (ruff) and run the whole test suite (what CI runs)
#   make test-fast  the tests not marked slow: the edit-test loop (under a minute)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch build to install; override for your CUDA (e.g. TORCH="torch torchvision").
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# demo knobs: SOURCE=path/to/cifar-10-python.tar.gz works offline
SOURCE ?=
DEMO_EPOCHS ?= 1

.PHONY: setup demo test test-fast lint bench dali-wheels clean
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml scripts/setup-env.sh
	PYTHON=$(PYTHON) VENV=$(VENV) TORCH="$(TORCH)" bash scripts/setup-env.sh
	touch $@

demo: setup
	$(BIN)/fastcifar prepare --dataset cifar10 $(if $(SOURCE),--source $(SOURCE))
	$(BIN)/fastcifar train --model resnet20 --dataset cifar10 --epochs $(DEMO_EPOCHS) --force --out runs/demo
	@$(BIN)/python -c "import json; s=json.load(open('runs/demo/summary.json')); print(f\"demo: test_acc {s['test_acc']:.4f}, {s['images_per_sec']:.0f} images/sec\")"

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: setup
	$(BIN)/fastcifar bench --quick

# The DALI wheel (split to fit a device call) and its small dependencies, for a GPU
# machine without a package index: see benchmarks/dali_gpu.sh.
dali-wheels:
	bash scripts/ready-dali-wheels.sh

clean:
	rm -rf $(VENV) build *.egg-info
