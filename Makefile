# Two commands do all the set-up: `make run` serves, `make test` tests. Both create the local
# virtual environment when it is missing and install again only when pyproject.toml changed.
# `make run` installs what serving with the default settings needs; `make test` adds the dev
# extras (every engine and backend, the test and lint tools) and works straight after it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-quick fuzz calibrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The package, and image screening (on by default): ONNX Runtime and NudeNet's wheel for its
# weights, without NudeNet's OpenCV dependency, which pixelmill does not use (safety/nudenet.py).
# No bytecode ahead of time: Python writes it for the modules serving imports, not for all.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) --no-compile -e . 'onnxruntime>=1.17'
	$(PIP) --no-compile --no-deps 'nudenet>=3.4,<3.5'  # the bounds of the safety extra
	touch $@

# Tests start many server processes: every module is compiled once here, those installed by
# `make run` included, so no process pays for it (some packages ship files meant not to compile).
$(DEV_STAMP): pyproject.toml constraints-test.txt | $(BIN)/python
	$(PIP) -e '.[dev]' -c constraints-test.txt
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/pixelmill serve

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python bench/service.py
	$(BIN)/python bench/workflow.py
	$(BIN)/python bench/outputs.py
	$(BIN)/python bench/screening.py

# A few minutes: every figure also as a ratio to a bare FastAPI endpoint (docs/performance.md).
bench-quick: $(DEV_STAMP)
	$(BIN)/python bench/quick.py

calibrate: $(DEV_STAMP)
	$(BIN)/python bench/screening_calibration.py

fuzz: $(DEV_STAMP)
	$(BIN)/python bench/fuzz.py

clean:
	rm -rf $(VENV) data .pytest_cache
