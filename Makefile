# Two set-up commands: `make demo` (the main job) and `make test` (the whole suite).
# Each bootstraps .venv on a fresh machine that has only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of PyTorch; pinned first so the range in pyproject.toml does not pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test bench lint fmt browser graphviz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP) graphviz
	$(BIN)/scones demo

browser:
	sh scripts/ensure-chromium.sh

# Graphviz `dot` draws the workflow console's state machine graphs.
graphviz:
	sh scripts/ensure-graphviz.sh

test: $(STAMP) browser graphviz
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	sh scripts/ensure-apt-command.sh wrk wrk "the load generator of benchmarks/serve_peers.py"
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
