# Two commands on a fresh Debian machine:  make demo   and   make test
VENV ?= .venv
PYTHON ?= python3

.PHONY: setup demo test lint unit clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	scripts/install-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[aws,dev,demo]'
	touch $@

demo: setup
	scripts/demo.sh

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q -m "not integration"

test: lint
	$(VENV)/bin/pytest -q --durations=25

clean-venv:
	rm -rf $(VENV)
