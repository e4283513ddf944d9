# Two commands do all the set-up: `make demo` and `make test`. Each creates (or reuses)
# the virtual environment in .venv and installs the package with what it needs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out
# The tests run on this many processes (pytest-xdist); tests/conftest.py says which stay together.
JOBS ?= 2

.PHONY: demo test docs lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## Run the main job on the bundled sample catalog, writing into $(OUT)/.
demo: $(STAMP)
	$(VENV)/bin/lazyraster demo --catalog catalogs/sample/catalog.json --out $(OUT) --overwrite

## Run the whole test suite (doctests and notebooks included) and the linter.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n $(JOBS) --dist loadgroup

## Build the documentation site into site/ (offline; warnings are errors). Open site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Run one benchmark: make bench NAME=ndvi [SIZE=4096]
bench: $(STAMP)
	$(PY) benchmarks/run.py $(NAME) $(if $(SIZE),--size $(SIZE))

clean:
	rm -rf $(VENV) $(OUT) site .pytest_cache .ruff_cache
