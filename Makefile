# Two commands do all the set-up: `make run` serves, `make test` tests. Both create the local
# virtual environment when it is missing and re-install only when pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints-test.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]' -c constraints-test.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pixelmill serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/service.py
	$(BIN)/python bench/workflow.py
	$(BIN)/python bench/outputs.py
	$(BIN)/python bench/screening.py

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py

clean:
	rm -rf $(VENV) data .pytest_cache
