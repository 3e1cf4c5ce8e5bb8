# Each target creates .venv (Python >= 3.12; `.python-version` selects it under pyenv) and installs the project.
SHELL := /bin/bash
PY ?= $(shell for p in python3.12 python3.13 python3 python; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "error: Python >= 3.12 is required (pyenv install 3.12)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/diffbio-prob demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m ""

bench: $(STAMP)
	$(VENV)/bin/pip install -q -e ".[bench]"
	for b in bench/*.py; do $(VENV)/bin/python $$b; done

clean:
	rm -rf $(VENV) diffbio-prob-demo
