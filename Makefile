# medrefine — two commands on a fresh machine:
#   make demo   set up .venv and run the main job on a phantom cohort it builds itself
#   make test   set up .venv and run the test suite
#
# Variables (override on the command line or in the environment):
#   PYTHON      interpreter that creates the venv          (default: python3)
#   VENV        where the venv lives                        (default: .venv)
#   TORCH_SPEC  pip requirement for PyTorch; installed when torch is not importable in the
#               venv, or always when you set it yourself  (default: torch==2.13.0, CPU build)
#   PYTEST_ARGS extra arguments for pytest                  (default: none)
#   DEMO_OUT    output folder of the demo                   (default: demo_output)

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_OUT ?= demo_output
STAMP := $(VENV)/.medrefine-installed

.PHONY: setup test demo bench clean help

help:
	@sed -n '2,13p' Makefile

$(VPY):
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VPY)
ifeq ($(origin TORCH_SPEC),file)
	@$(VPY) -c "import torch" 2>/dev/null && echo "torch already importable: keeping it" || $(VPY) -m pip install "$(TORCH_SPEC)"
else
	$(VPY) -m pip install "$(TORCH_SPEC)"
endif
	$(VPY) -m pip install --quiet -e ".[test,bench]"
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(VPY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/medrefine demo --out $(DEMO_OUT)

bench: setup
	$(VPY) benchmarks/metrics.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
