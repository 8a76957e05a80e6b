# make train  — set up .venv if needed, then the embedded default with a transfer set (teacher, KD student, no-KD student)
# make test   — set up .venv if needed, then lint (ruff) and run the fast test suite
# make format — apply ruff's fixes and formatting
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed only when the venv has no torch yet; GPU users install their own torch first.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.kdlab-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# ruff settings live in pyproject.toml; `make format` rewrites what `make test` would refuse
LINTED := kdlab tests benchmarks

.PHONY: install train test test-slow benchmark format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,minilm,hf,st,tracking,sweep,cluster]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/kdlab-train experiment=hinton_transfer method.baseline=true trainer.enable_progress_bar=false

test: $(STAMP)
	$(BIN)/ruff check $(LINTED) && $(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	KDLAB_DATA_DIR=$${KDLAB_DATA_DIR:-../shared/data} $(BIN)/python -m pytest -m slow -q

benchmark: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED) && $(BIN)/ruff format $(LINTED)

clean:
	rm -rf outputs multirun .kdlab_cache .pytest_cache
