"""pytest entry point. Loaded by every pytest run in the environment, so it imports nothing heavy:
options and fixtures live here; everything else is imported only when --genai-config is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_genai.interrupts import session_closed, session_opened
from pytest_genai.state import STATE_KEY

WORKER_RUN_TOKEN = "genai_cache_run"  # workerinput key: the controller's response-cache run token


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_genai import builtin_hooks, hookspec

    pluginmanager.add_hookspecs(hookspec)
    # the built-ins implement the same hooks; registered before any conftest, so a user's `tryfirst` runs first
    # and a plain implementation after them (pytest only imports this module: it imports nothing heavy)
    pluginmanager.register(builtin_hooks, "genai-builtins")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genai", "pytest-genai: GenAI evals as pytest items")
    group.addoption("--genai-config", metavar="PATH", default=None,
                    help="YAML config of the eval: each case of its eval set becomes a test item")
    group.addoption("--genai-tracking-uri", metavar="URI", default=None,
                    help="MLflow tracking URI (overrides tracking.uri and MLFLOW_TRACKING_URI)")
    group.addoption("--genai-enforce-gates", action="store_true", default=False,
                    help="enforce gates on a partial run (-k, --lf, deselection) too")
    group.addoption("--genai-repeat", metavar="N", type=int, default=None,
                    help="run each case N times (overrides eval.repeat): with llm.temperature > 0 each repeat has its "
                         "own seed and a case passes by eval.pass_policy (pass_rate, flip_rate, pass_at_k); else the "
                         "same seed, and items whose outputs differ fail")
    group.addoption("--genai-cache", metavar="MODE", default="off", choices=("off", "read-write", "record", "replay"),
                    help="LLM response cache: off (default), read-write, record (always call, store), "
                         "replay (never call the provider; a miss fails the case)")
    group.addoption("--genai-cache-path", metavar="PATH", default=None,
                    help="the cache's sqlite file (default: .pytest-genai/cache.sqlite3 next to the config)")
    group.addoption("--genai-cassette", metavar="PATH", default=None,
                    help="with record: export the cache to this JSONL file after the run; with replay: replay from it")
    group.addoption("--genai-register", action="store_true", default=False,
                    help="after a full run whose gates passed and which was logged: register the pipeline as a new "
                         "version of registry.model_name and point registry.alias (default staging) at it")
    group.addoption("--genai-baseline", metavar="REF", default=None,
                    help="compare with a baseline (overrides compare.baseline): a local run folder, an MLflow run id, "
                         "models:/NAME@ALIAS or models:/NAME/VERSION (the eval run behind that model version), or previous "
                         "(the newest complete run of this eval set in tracking.results_dir)")
    group.addoption("--genai-baseline-intersect", action="store_true", default=False,
                    help="compare on the case ids shared with the baseline, even when its eval set differs "
                         "(tagged genai.baseline_intersect=true)")
    group.addoption("--genai-require-baseline", action="store_true", default=False,
                    help="a gate that needs a baseline fails, instead of being skipped, when there is none")
    group.addoption("--genai-concurrency", metavar="N", type=int, default=None,
                    help="cases run concurrently on a pool of N (overrides llm.concurrency); results do not depend on N")
    group.addoption("--genai-shard", metavar="I/N", default=None,
                    help="run shard I of N: the cases whose hashed id falls in shard I (stable when cases are added); "
                         "logged as a child run of the --genai-group parent; gates reported, not enforced")
    group.addoption("--genai-group", metavar="ID", default=None,
                    help="the eval the shards belong to (default $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT); "
                         "`pytest-genai merge ID` aggregates them into the parent run")
    group.addoption("--genai-auto-merge", action="store_true", default=False,
                    help="with --genai-shard: the last shard of the group to finish (all N logged, seen through the "
                         "tracking store) merges the group into its parent run, as `pytest-genai merge ID` would; "
                         "a failed gate of the whole eval then fails that session")
    group.addoption("--genai-resume", metavar="RUN", default=None,
                    help="finish an interrupted run: its run folder (path, or name in tracking.results_dir) or MLflow "
                         "run id; runs only the cases it did not finish, with the same config, eval set, prompt and "
                         "env, into the same run folder")
    group.addoption("--genai-dry-run", action="store_true", default=False,
                    help="call no model: render and count every selected case's prompt, print calls, input and "
                         "output tokens, cost (low-high) and the expected wall time, check budget:, record nothing")
    group.addoption("--genai-markdown", metavar="PATH", default=None,
                    help="write the run's markdown summary (gates, deltas, failing and regressed cases) to PATH, "
                         "e.g. for a PR comment; with $GITHUB_STEP_SUMMARY set it is also appended there")


def pytest_configure(config: pytest.Config) -> None:
    outermost = session_opened()  # False for a session run inside another one's process (pytester)
    path = config.getoption("genai_config", None)
    if not path:
        return
    from pytest_genai.config import ConfigError, load_config
    from pytest_genai.eval_plugin import EvalPlugin
    from pytest_genai.llm.store import set_run_token
    from pytest_genai.registries import registries
    from pytest_genai.repeats import session_policy
    from pytest_genai.seeding import install_import_hook
    from pytest_genai.session import EvalSession, SessionSetupError

    # whose run the response cache's uses are: a worker's are its controller's (pytest_configure_node)
    set_run_token(getattr(config, "workerinput", {}).get(WORKER_RUN_TOKEN))
    repeat = config.getoption("genai_repeat")
    if repeat is not None and repeat < 1:
        raise pytest.UsageError(f"--genai-repeat must be at least 1 (got {repeat})")
    config.hook.pytest_genai_register(registries=registries())  # before validation: gates may name these metrics
    install_import_hook()  # numpy/torch first imported inside a case get that case's seed
    try:
        genai_config = load_config(config.invocation_params.dir / path)
        state = EvalSession.from_config(genai_config, repeat=repeat, runtime=_runtime(config, genai_config))
        session_policy(genai_config, state.repeat)  # a k_of_n for another N, a gate on flip_rate with nothing sampled
    except (ConfigError, SessionSetupError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(EvalPlugin(config, state, outermost=outermost), "genai-eval")
    dry = bool(config.getoption("genai_dry_run"))
    if dry or genai_config.get("budget"):  # the estimate before any call: printed (dry run), or held to budget:
        from pytest_genai.dryrun_plugin import DryRunPlugin

        config.pluginmanager.register(DryRunPlugin(config, state, dry=dry), "genai-dry-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    session_closed()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: hand each worker this run's cache token (plain data, once per worker)."""
    if node.config.getoption("genai_config", None):
        from pytest_genai.llm.store import run_token

        node.workerinput[WORKER_RUN_TOKEN] = run_token()


def _runtime(config: pytest.Config, genai_config: Any) -> Any:
    from pytest_genai.runtime import Runtime

    option = config.getoption("genai_concurrency")
    concurrency = option if option is not None else int(genai_config.get("llm.concurrency") or 1)
    if concurrency < 1:
        raise pytest.UsageError(f"--genai-concurrency must be at least 1 (got {concurrency})")
    mode = config.getoption("genai_cache")
    invocation = config.invocation_params.dir
    cache_path = config.getoption("genai_cache_path")
    cassette = config.getoption("genai_cassette")
    if cassette and mode not in ("record", "replay"):
        raise pytest.UsageError("--genai-cassette goes with --genai-cache=record (export) or --genai-cache=replay (replay from it)")
    path = invocation / cache_path if cache_path else genai_config.base_dir / ".pytest-genai" / "cache.sqlite3"
    cassette_path = invocation / cassette if cassette else None
    if mode == "replay" and cassette_path is not None:
        if not cassette_path.is_file():
            raise pytest.UsageError(f"--genai-cassette {cassette_path}: no such file")
        import tempfile

        from pytest_genai.llm.cache import CassetteError, import_cassette

        path = Path(tempfile.mkdtemp(prefix="genai-replay-")) / "cache.sqlite3"  # per process: xdist-safe
        try:
            import_cassette(cassette_path, path)
        except CassetteError as exc:
            raise pytest.UsageError(f"--genai-cassette: {exc}") from None
    return Runtime(mode, path, cassette_path, concurrency)


def _state(config: pytest.Config) -> Any:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        pytest.skip("this test uses a pytest-genai fixture: run with --genai-config PATH")
    return state


@pytest.fixture(scope="session")
def genai_config(pytestconfig: pytest.Config) -> Any:
    """The resolved, validated config of this session."""
    return _state(pytestconfig).config


@pytest.fixture(scope="session")
def genai_pipeline(pytestconfig: pytest.Config) -> Any:
    """The pipeline built from the pinned config, once per session, shared with the eval items."""
    return _state(pytestconfig).pipeline


@pytest.fixture(scope="session")
def genai_seed(pytestconfig: pytest.Config) -> int:
    """The global seed; `pytest_genai.seeding.case_seed(seed, case_id)` gives a case's seed."""
    return int(_state(pytestconfig).seed)
