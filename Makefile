# The two commands of the README. Both set up everything on a fresh machine first
# (tests/aid_harness/setup.sh: venv, torch, ComfyUI host, requirements, random models)
# and reuse what an earlier run built.
#   make test                      run the whole test suite (slow tests included)
#   make test PYTEST_ARGS="-m 'not slow' -x"
#   make demo                      run workflows/aid_text_interpolation.json headless
#   make demo CKPT=/path/model.safetensors COMFYUI_PATH=/path/ComfyUI WORKFLOW=workflows/x.json
PYTHON ?= python3.11
VENV ?= .venv
PYTEST_ARGS ?=

export PYTHON
export AID_VENV := $(VENV)

.PHONY: setup test demo benchmark

setup:
	bash tests/aid_harness/setup.sh

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python tests/aid_harness/demo.py $(if $(WORKFLOW),--workflow $(WORKFLOW)) $(if $(CKPT),--ckpt $(CKPT))

benchmark: setup
	$(VENV)/bin/python benchmarks/aid_cost.py
	$(VENV)/bin/python benchmarks/smooth_rows.py
	$(VENV)/bin/python benchmarks/aid_dit_cost.py
	$(VENV)/bin/python benchmarks/aid_dit_blocks.py
