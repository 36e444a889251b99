# Two promises: `make quickstart` (set-up, then the ShapeWorld pipeline end to end) and `make test`
# (set-up, then the tests). Both work on a fresh machine with only the package registries reachable.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/quickstart
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test quickstart rehearse clean

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

# The multi-GPU training path on two CPU processes (FSDP2 over gloo) against one process: SFT and GRPO on a small
# ShapeWorld world, a resume from the sharded checkpoint, every save loaded in stock transformers (~2 min on 2 cores;
# REHEARSAL/report.json; docs/grpo.md, "Rehearsal").
REHEARSAL ?= runs/rehearsal
rehearse: install
	nice -n 19 env OMP_NUM_THREADS=1 $(PY) scripts/rehearse.py --out $(REHEARSAL)

clean:
	rm -rf $(VENV) runs .pytest_cache

# The optional aesthetic term (open_clip) in a venv of its own: open_clip imports torchvision, and PyPI's
# torchvision wheels are built against torch's CUDA build (they do not import beside the CPU torch above). So this
# venv takes a matching CUDA torch + torchvision pair (it runs on CPU too; ~6 GB installed) and runs only the
# aesthetic tests.
CLIP_VENV ?= .venv-clip
CLIP_PY := $(CLIP_VENV)/bin/python
TORCH_CLIP ?= torch==2.14.1 torchvision==0.29.1

.PHONY: test-clip

$(CLIP_VENV)/.installed: setup.py
	$(PYTHON) -m venv $(CLIP_VENV)
	$(CLIP_PY) -m pip install -q --upgrade pip
	$(CLIP_PY) -m pip install -q $(TORCH_CLIP)
	$(CLIP_PY) -m pip install -q -e ".[dev,clip]"
	touch $@

test-clip: $(CLIP_VENV)/.installed
	$(CLIP_PY) -m pytest -q tests/rewards/test_aesthetic.py
