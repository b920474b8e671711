"""Shared fixtures: a migrated MLflow sqlite template (migrations take seconds: do them once), and a
small eval project written into a pytester folder."""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any, Callable

import _pytest.pytester as _pytester
import pytest
import yaml

from pytest_genai.cache_dir import models_root

pytest_plugins = ["pytester", "server_fixture"]

# pytester points HOME at a temporary folder: sessions under test find the model weights that `make setup` fetched
# (`pytest-genai install-models`) where they are, whatever cache folder a test gives them.
os.environ.setdefault("PYTEST_GENAI_MODELS_DIR", str(models_root()))

# pytester restores `sys.modules` when a test that uses it (or an in-process session) ends, dropping every module
# imported meanwhile. Installed libraries are not made to be imported twice in one process: a later test in the same
# xdist worker re-ran torch's C initialisation (a SystemError with a garbled message, then a segfault in the garbage
# collector or at the next `import torch`, after which xdist's replacement worker hung the CI run until its time ran
# out), re-registered torch's operator libraries ("Only a single TORCH_LIBRARY can be used..."), or was refused by
# numpy, scipy and sklearn ("cannot load module more than once per process"). So the snapshot keeps what lives in
# site-packages, as any real process does; this project's modules and the tests' own are still dropped.
SITE_PACKAGES = tuple(dict.fromkeys(os.path.join(sysconfig.get_paths()[k], "") for k in ("purelib", "platlib")))


def installed_library(name: str) -> bool:
    """`sys.modules[name]` is an installed third-party module or package (its file or its path under
    site-packages), not this project's (installed editable, or not)."""
    module = sys.modules.get(name)
    if module is None or name.partition(".")[0] == "pytest_genai":
        return False
    spec = getattr(module, "__spec__", None)  # a namespace package has no file, only where its parts are
    where = [getattr(module, "__file__", None), *(getattr(spec, "submodule_search_locations", None) or ())]
    return any(isinstance(w, str) and w.startswith(SITE_PACKAGES) for w in where)


class _KeepingSnapshot(_pytester.SysModulesSnapshot):
    def __init__(self, preserve: Callable[[str], bool] | None = None) -> None:
        super().__init__(preserve=lambda name: installed_library(name) or bool(preserve and preserve(name)))


_pytester.SysModulesSnapshot = _KeepingSnapshot  # type: ignore[misc]  # pytester takes its snapshots by this name


@pytest.fixture(autouse=True)
def _no_github_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions under test never append to the CI job's own step summary (a test sets it where it checks it)."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def stub(request: pytest.FixtureRequest) -> Any:
    """The OpenAI-compatible stub server, requiring the test module's `KEY` as its API key and answering after its
    `STUB_LATENCY_MS` (default 0). A module with another stub defines its own `stub` fixture."""
    from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour

    with OpenAIStub(StubBehaviour(latency_ms=getattr(request.module, "STUB_LATENCY_MS", 0.0),
                                  api_key=request.module.KEY)) as s:
        yield s


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with every migration applied, copied by each test that needs one."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, mlflow_template: Path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    return f"sqlite:///{db}"


CASES = [
    {"id": "paris", "question": "What is the capital of France?", "answers": ["Paris"], "context": "Paris is the capital of France.", "tags": ["geo"]},
    {"id": "rome", "question": "What is the capital of Italy?", "answers": ["Rome"], "context": "Rome is the capital of Italy.", "tags": ["geo"]},
    {"id": "h2o", "question": "What is the formula of water?", "answers": ["H2O"], "context": "H2O is the formula of water.", "tags": ["sci"]},
    {"id": "moon", "question": "Who walked on the moon first?", "answers": ["Neil Armstrong", "Armstrong"], "context": "Neil Armstrong walked on the moon first.", "tags": ["sci"]},
]

# A user's pipeline: answers with the first sentence's first word(s) of the context, plus a
# seeded random suffix when the question asks for it (so seeding is observable).
PIPELINE = '''
import random
from pytest_genai import Answer, Usage

def factory(config):
    mode = config.get("llm.model_id")
    def pipeline(case):
        if "boom" in case.id:
            raise RuntimeError("the model server said no")
        words = (case.context or "").split()
        text = " ".join(words[:2]) if case.id == "moon" else words[0]
        if mode == "random":
            text += " " + str(random.randint(0, 10**9))
        return Answer(text=text, contexts=(case.context,), usage=Usage(len(case.question.split()), len(text.split())))
    return pipeline

def plain(config):
    return lambda case: (case.context or "").split()[0]
'''


class Project:
    """A throwaway eval project inside a pytester folder."""

    def __init__(self, pytester: pytest.Pytester, mlflow_uri: str) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.mlflow_uri = mlflow_uri
        self.config: dict[str, Any] = {
            "version": 1,
            "seed": 7,
            "pipeline": "genai_user_pipeline:factory",
            "llm": {"model_id": "fixed", "pricing": {"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0}},
            "eval": {"set": "evals/qa.jsonl"},
            "gates": {"f1": ">= 0.5"},
            "tracking": {"uri": mlflow_uri, "experiment": "test-exp", "results_dir": "runs"},
            "env": {"lock_file": "none.lock"},
        }
        pytester.makepyfile(genai_user_pipeline=PIPELINE)
        self.write_cases(CASES)

    def write_cases(self, cases: list[dict[str, Any]]) -> None:
        (self.path / "evals").mkdir(exist_ok=True)
        (self.path / "evals" / "qa.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))

    def write_config(self, name: str = "genai.yaml", **overrides: Any) -> Path:
        cfg = json.loads(json.dumps(self.config))
        for dotted, value in overrides.items():
            node = cfg
            *parents, last = dotted.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
        path = self.path / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def write_prompt(self, pid: str = "qa", version: int = 1, template: str = "Context: {{ context }}\\nQ: {{ question }}") -> None:
        (self.path / "prompts").mkdir(exist_ok=True)
        (self.path / "prompts" / f"{pid}.yaml").write_text(textwrap.dedent(f"""\
            id: {pid}
            version: {version}
            template: "{template}"
            """))

    def use_stub(self, base_url: str, cases: list[dict[str, Any]], **llm: Any) -> None:
        """builtin:llm on the OpenAI-compatible stub, the key from $OPENAI_API_KEY, a Context:/Question: prompt."""
        self.write_cases(cases)
        self.write_prompt(template="Context: {{ context }}\\nQuestion: {{ question }}")
        self.config.update({
            "pipeline": "builtin:llm",
            "prompt": {"id": "qa", "version": 1},
            "llm": {"provider": "openai_compatible", "base_url": base_url, "api_key": "${OPENAI_API_KEY}",
                    "model_id": "stub-model", "max_tokens": 16, **llm},
        })

    def run(self, *args: str, subprocess: bool = False) -> pytest.RunResult:
        if subprocess:
            return self.pytester.runpytest_subprocess(*args)
        return self.pytester.runpytest_inprocess(*args)

    def run_dirs(self) -> list[Path]:
        root = self.path / "runs"
        # oldest first by when each folder was last written (run.json goes last): names are <second>-<config hash>,
        # so two runs in one second would sort by hash, not by time
        return sorted(root.iterdir(), key=lambda d: (d.stat().st_mtime_ns, d.name)) if root.is_dir() else []

    def last_results(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.run_dirs()[-1] / "results.jsonl").read_text().splitlines()]

    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dirs()[-1] / "run.json").read_text())


def registering(project: Project, model_name: str) -> Project:
    """The project set up to register `model_name`: a lock of the running env (this repository's or the floors'),
    the registry section, no clean-git requirement (pytester folders are not checkouts)."""
    from pytest_genai.testing.example_project import write_env_lock

    write_env_lock(project.path / "requirements.lock")
    project.config["env"] = {"lock_file": "requirements.lock"}
    project.config["registry"] = {"model_name": model_name, "require_clean_git": False}
    project.write_config()
    return project


@pytest.fixture
def project(pytester: pytest.Pytester, mlflow_uri: str) -> Project:
    pytester.syspathinsert()
    return Project(pytester, mlflow_uri)
