# The two commands of the README. Both set up everything on a fresh machine first
# (tests/aid_harness/setup.sh: venv, torch, ComfyUI host, requirements, random models)
# and reuse what an earlier run built.
#   make test                      run the whole test suite (slow tests included)
#   make test PYTEST_ARGS="-m 'not slow' -x"
#   make demo                      run example_workflows/aid_text_interpolation.json headless
#   make demo CKPT=/path/model.safetensors COMFYUI_PATH=/path/ComfyUI WORKFLOW=aid_text_interpolation
PYTHON ?= python3.11
VENV ?= .venv
PYTEST_ARGS ?=

export PYTHON
export AID_VENV := $(VENV)

.PHONY: setup setup-demo test demo benchmark templates node-help

setup:
	bash tests/aid_harness/setup.sh --for test

# What the demo needs and nothing else: no test tools, no test models.
setup-demo:
	@bash tests/aid_harness/setup.sh --for demo

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: setup-demo
	@$(VENV)/bin/python tests/aid_harness/demo.py $(if $(WORKFLOW),--workflow $(WORKFLOW)) $(if $(CKPT),--ckpt $(CKPT))

benchmark: setup
	$(VENV)/bin/python benchmarks/aid_cost.py
	$(VENV)/bin/python benchmarks/smooth_rows.py
	$(VENV)/bin/python benchmarks/editing_cost.py
	$(VENV)/bin/python benchmarks/distributed_share.py
	$(VENV)/bin/python benchmarks/spacetime_cost.py
	$(VENV)/bin/python benchmarks/aid_dit_cost.py
	$(VENV)/bin/python benchmarks/aid_dit_blocks.py

# Rewrite example_workflows/*.json from tests/aid_harness/example_workflows.py and draw each
# thumbnail as a diagram of its parameters; WORKFLOW=name limits it to one, CKPT=file renders the
# thumbnails of the workflows that load a checkpoint from real frames on it.
templates: setup
	$(VENV)/bin/python tests/aid_harness/templates.py $(WORKFLOW) $(if $(CKPT),--ckpt $(CKPT))

# Rewrite web/docs/<NodeId>.md, the editor's help of every node, from the node classes and docs/.
node-help: setup
	$(VENV)/bin/python tools/node_help.py
