# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   compile the sample MNIST MLP for the CPU, print the report, check it against PyTorch eager
#   make test   lint, type-check, check the layer rules and run the test suite on every CPU (what CI runs, via .ci/run)
#   make lint   only the checks: ruff, mypy and import-linter (these two on the installed layout: scripts/layout_tree.py)
# Both create .venv (python3.11 -m venv) and install graphopt with its pinned dependencies first.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.graphopt-installed
DEMO_OUT ?= out/mnist_mlp

.PHONY: all demo test venv lint clean

all: demo

venv: $(INSTALLED)

# Re-install whenever pyproject.toml changes; the stamp keeps later runs instant.
$(INSTALLED): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# ONNX import (onnx2torch) without its torchvision requirement: PyPI's torchvision is a CUDA build that
	# does not load beside the CPU torch and breaks every later import of transformers (graphopt/onnx/io.py).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps onnx2torch==1.5.15
	@touch $@

samples/weights/mnist_mlp.pt: | $(INSTALLED)
	$(BIN)/python -m samples.train --only mnist_mlp

demo: $(INSTALLED) samples/weights/mnist_mlp.pt
	$(BIN)/graphopt compile samples/mnist_mlp.py:mnist_mlp --input-shape 2x784 --dynamic-batch --verify -o $(DEMO_OUT)
	$(BIN)/python -m samples.check_artifact $(DEMO_OUT)

# System packages some tests need (cross compilers, a headless browser) come from scripts/setup_*.sh,
# idempotent and quick when already installed; they need root for apt-get.
test: $(INSTALLED)
	@for script in scripts/setup_*.sh; do \
		[ -e "$$script" ] || continue; \
		echo "== $$script"; \
		if [ "$$(id -u)" = 0 ]; then bash "$$script"; \
		elif command -v sudo >/dev/null; then sudo -E bash "$$script"; \
		else bash "$$script"; fi || exit 1; \
	done
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/layout_tree.py mypy -p graphopt
	$(BIN)/python scripts/layout_tree.py lint-imports
	$(BIN)/python -m pytest -q -n logical --dist loadfile --durations=25

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/layout_tree.py mypy -p graphopt
	$(BIN)/python scripts/layout_tree.py lint-imports

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
