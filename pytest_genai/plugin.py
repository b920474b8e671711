"""pytest entry point. Loaded by every pytest run in the environment, so it imports nothing heavy:
options and fixtures live here; everything else is imported only when --genai-config is given."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_genai.state import STATE_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genai", "pytest-genai: GenAI evals as pytest items")
    group.addoption("--genai-config", metavar="PATH", default=None,
                    help="YAML config of the eval: each case of its eval set becomes a test item")
    group.addoption("--genai-tracking-uri", metavar="URI", default=None,
                    help="MLflow tracking URI (overrides tracking.uri and MLFLOW_TRACKING_URI)")
    group.addoption("--genai-enforce-gates", action="store_true", default=False,
                    help="enforce gates on a partial run (-k, --lf, deselection) too")
    group.addoption("--genai-repeat", metavar="N", type=int, default=1,
                    help="run each case N times with its seed; items whose outputs differ fail")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("genai_config", None)
    if not path:
        return
    from pytest_genai.config import ConfigError, load_config
    from pytest_genai.eval_plugin import EvalPlugin
    from pytest_genai.session import EvalSession, SessionSetupError

    repeat = config.getoption("genai_repeat")
    if repeat < 1:
        raise pytest.UsageError(f"--genai-repeat must be at least 1 (got {repeat})")
    try:
        genai_config = load_config(config.invocation_params.dir / path)
        state = EvalSession.from_config(genai_config, repeat=repeat)
    except (ConfigError, SessionSetupError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(EvalPlugin(config, state), "genai-eval")


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
