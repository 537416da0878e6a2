# Two entry points for a fresh machine: `make reproduce` and `make test`.
# Each creates .venv (once) and installs into it exactly what the lock pins, hashes checked.
PYTHON ?= python3
VENV ?= .venv
PRESET ?= quick
OUT ?= runs/reproduce-$(PRESET)
BIN = $(VENV)/bin
# every distribution, pinned with its sha256 hashes: the package's dependencies, the test and
# ray extras, and the build backend (CPython 3.11, x86_64 Linux); regenerate with `make lock`
LOCK = requirements/lock.txt
UV ?= uv
LOCK_ARGS ?=

.PHONY: reproduce test venv lock clean

# a fresh venv (--clear) holds nothing the lock does not pin; pip refuses any distribution
# whose hash is not in the lock, and any dependency the lock lacks. The package itself is
# installed editable without dependencies or build isolation (both come from the lock). The
# lock's copy in the venv is what results.environment() hashes into every config.json.
$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	cp $(LOCK) $(VENV)/shorthorizon-lock.txt
	touch $@

venv: $(BIN)/.installed

reproduce: venv
	$(BIN)/shorthorizon reproduce --preset $(PRESET) --out $(OUT) --fetch-data

# one pytest worker per core (JAX compiles on one thread; tests are mostly compilation), a test
# file's tests on one worker so that its module fixtures are built once
test: venv
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# needs uv (pip install uv); keeps the pins that still satisfy pyproject.toml:
# `make lock LOCK_ARGS=--upgrade` takes the newest releases, `LOCK_ARGS="--upgrade-package jax"` one
lock:
	$(UV) pip compile pyproject.toml requirements/build.in --extra test --extra ray \
	    --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	    --custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)

clean:
	rm -rf $(VENV) runs
