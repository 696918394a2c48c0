# Every target does its own set-up from a fresh clone: nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# The CPU build of torch (a pinned release; an unpinned one pulls a multi-GB CUDA build).
	$(BIN)/pip install -q 'torch==2.13.0' numpy
	touch $(STAMP)

## demo: set everything up and run the quick start on the embedded local backend
demo: $(STAMP)
	NEO_HOME=$${NEO_HOME:-$(CURDIR)/.neo-home} $(BIN)/python examples/demo.py

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(BIN)/ruff check jupyter_neo server tests bench examples
	$(BIN)/ruff format --check jupyter_neo server tests bench examples
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.10 --strict server/neo_agent

fmt: $(STAMP)
	$(BIN)/ruff check --fix jupyter_neo server tests bench examples
	$(BIN)/ruff format jupyter_neo server tests bench examples

## test: lint first, then every test
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .neo-home .pytest_cache .mypy_cache .ruff_cache
