# Both targets bootstrap .venv on a fresh machine; re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.kerastrainer-installed

DOCS_STAMP := $(VENV)/.kerastrainer-docs-installed

.PHONY: demo test docs bench dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/digits.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

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
	rm -rf $(VENV) build dist site *.egg-info
