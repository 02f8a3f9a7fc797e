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

# The whole suite on both event loops: asyncio's and uvloop (what `wxio serve` picks when installed).
test: install-test
	WXIO_LOOP=asyncio $(BIN)/python -m pytest $(PYTEST_ARGS)
	WXIO_LOOP=uvloop $(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy checks the packages under their installed names (wxio.protocol, wxio.adapter).
lint: install-test
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	mkdir -p .typecheck/wxio && ln -sfn ../../protocol .typecheck/wxio/protocol && ln -sfn ../../adapter .typecheck/wxio/adapter
	MYPYPATH=.typecheck $(BIN)/mypy -p wxio.protocol -p wxio.adapter --namespace-packages --explicit-package-bases
	$(BIN)/ruff check protocol adapter

bench: install-test
	$(BIN)/python bench/codec.py
