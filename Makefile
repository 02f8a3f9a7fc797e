# The README's two commands: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,redis]'
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

run: install
	$(BIN)/wxio serve

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/mypy protocol adapter
	$(BIN)/ruff check protocol adapter tests bench

bench: install-test
	$(BIN)/python bench/codec.py
