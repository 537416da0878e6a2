# Two entry points for a fresh machine: `make reproduce` and `make test`.
# Each creates .venv (once) and installs the package with what it needs.
PYTHON ?= python3
VENV ?= .venv
PRESET ?= quick
OUT ?= runs/reproduce-$(PRESET)
BIN = $(VENV)/bin

.PHONY: reproduce test venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	touch $@

venv: $(BIN)/.installed

reproduce: venv
	$(BIN)/shorthorizon reproduce --preset $(PRESET) --out $(OUT) --fetch-data

# one pytest worker per core (JAX compiles on one thread; tests are mostly compilation), a test
# file's tests on one worker so that its module fixtures are built once
test: venv
	$(BIN)/python -m pytest -q -n auto --dist loadfile

clean:
	rm -rf $(VENV) runs
