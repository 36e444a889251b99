# Two promises: `make quickstart` (set-up, then the ShapeWorld pipeline end to end) and `make test`
# (set-up, then the tests). Both work on a fresh machine with only the package registries reachable.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/quickstart
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test quickstart clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q tests

quickstart: install
	bash scripts/quickstart.sh $(RUN)

clean:
	rm -rf $(VENV) runs .pytest_cache
