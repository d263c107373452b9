# The two commands: `make demo` runs the whole chain on the embedded defaults, `make test` runs
# every test. Both create/refresh .venv from the pinned set first (a no-op when up to date).
VENV ?= .venv
BIN := $(VENV)/bin
export SHOPREC_HOME ?= $(CURDIR)/.shoprec

.PHONY: setup demo test lint bench clean

setup:
	@SHOPREC_VENV=$(VENV) bash scripts/bootstrap.sh

demo: setup
	$(BIN)/shoprec demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .shoprec
