# sarsweep: the two commands a fresh machine needs.
#   make demo   # set up (if needed) and run the main job on generated SAR data
#   make test   # set up (if needed) and run the whole test suite
# Set-up creates .venv, installs torch 2.13.0 (the CPU wheel; bring your own CUDA build by
# installing it into .venv first) and then sarsweep with its test and bench extras (bench: the
# peers bench/simulate.py compares with, syne-tune among them; the product needs none of them).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

install: $(VENV)/.installed

# In a folder of its own: the quickstart's sarsweep.db, best.yaml and report.md stay apart.
demo: install
	mkdir -p demo && cd demo && ../$(BIN)/sarsweep demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/epoch_time.py

clean:
	rm -rf $(VENV) runs .pytest_cache
