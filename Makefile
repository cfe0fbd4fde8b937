# Both targets bootstrap .venv on a fresh machine; re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.kerastrainer-installed

DOCS_STAMP := $(VENV)/.kerastrainer-docs-installed

# The lowest supported versions (constraints-min.txt) on the lowest supported Python.
MIN_VENV := .venv-min
MIN_STAMP := $(MIN_VENV)/.kerastrainer-installed
MIN_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10) \
                          $(shell command -v python3.10 2>/dev/null))
MIN_TESTS := tests/test_trainer.py tests/test_checkpoint.py tests/test_losses.py \
             tests/callbacks/test_keras_adapter.py tests/test_refusals.py tests/tuner

.PHONY: demo test test-min docs bench dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(MIN_STAMP): pyproject.toml constraints-min.txt
	@test -n "$(MIN_PYTHON)" || { echo "make test-min needs Python 3.10: set MIN_PYTHON=/path/to/python3.10"; exit 1; }
	rm -rf $(MIN_VENV)
	$(MIN_PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c constraints-min.txt -e ".[plot]" pytest scikit-learn
	touch $(MIN_STAMP)

# fit, resume, Keras callbacks, the loss rules and the tuner on the lowest versions
test-min: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -c "import sys, tensorflow as tf, keras; print('test-min on Python', sys.version.split()[0], 'TensorFlow', tf.__version__, 'Keras', keras.__version__)"
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(MIN_TESTS)

demo: $(STAMP)
	$(VENV)/bin/python examples/digits.py

# One test process per core, at most 4; on 2 cores about 5 minutes, bound by CPU (docs/performance.md).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadgroup

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

dist: $(STAMP)
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist site *.egg-info
