"""Docs that cannot rot: the site builds with `mkdocs build --strict`, the generated reference pages are what the code
gives, every YAML block parses (and a config block matches the config schema), and every command the docs and the
README show is either run here or mapped to the test that runs it.

Runnable blocks are marked by an HTML comment on the line before the fence (invisible on the site and on GitHub):

    <!-- run -->                    a shell block (```console with `$ ` prompts, or ```bash): each command runs in the
                                    page's scratch project and must exit 0; in a console block the output lines shown
                                    must appear in the real output (`...` stands for anything, spacing is ignored)
    <!-- run: exit=1 -->           the same, expecting that exit code
    <!-- run: write=PATH -->        the block's text is written to PATH in the scratch project
    <!-- run: merge=genai.yaml -->  the block (YAML) is merged into that file of the scratch project

Each page with marked blocks gets its own scratch project, made by `pytest-genai init --starter api` and pointed at
the local OpenAI-compatible stub (pytest_genai/testing/openai_stub.py); its blocks run in page order. A command that
needs a real model, a server, the network or a clean git checkout is mapped in MAPPED to the test that runs it (the
node must exist), in CI to the line of .ci/run that runs it, or listed in NOT_RUN with the reason."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
KEY = "sk-docs-test-0123456789"  # the stub fixture (conftest) requires it; the scratch project's OPENAI_API_KEY
SHELL = {"bash", "sh", "shell", "console"}
SCRATCH = "pytest-genai init --starter api"  # what makes each scratch project: run for every runnable page
FIX_GENERATED = ".venv/bin/python scripts/gen_docs.py"

# command -> the test(s) that run it (a real model, a server, a fresh venv, the network or a clean git checkout)
MAPPED: dict[str, tuple[str, ...]] = {
    "pip install 'pytest-genai[all]'": ("tests/test_install.py::test_all_then_init_then_a_green_first_run_offline",),
    "pip install pytest-genai": ("tests/test_install.py::test_the_core_install_has_no_torch_and_a_clean_pip_check",
                                 "tests/test_install.py::test_the_core_evaluates_an_api_model_and_replays_it_without_the_key"),
    "pytest-genai init": ("tests/test_install.py::test_all_then_init_then_a_green_first_run_offline",
                          "tests/test_init.py::test_an_offline_starter_passes_on_its_first_run"),
    "pytest-genai init --starter rag": ("tests/test_init.py::test_an_offline_starter_passes_on_its_first_run",),
    # an interrupted run (SIGTERM on a real session) resumed by its folder and by its MLflow run id
    "pytest --genai-config genai.yaml --genai-resume 20261207-054251-5c1a2b3d": (
        "tests/test_durability.py::test_resume_runs_only_the_unfinished_cases_into_the_same_run_and_equals_an_uninterrupted_one",
        "tests/test_durability.py::test_resume_refuses_other_inputs_naming_what_changed"),
    # the bundled example: SmolLM2 + MiniLM on the CPU, registered into a sqlite store from a clean checkout
    "pytest --genai-config genai.yaml --genai-register": ("tests/test_release.py::test_release_loop_on_the_bundled_example",),
    ".venv/bin/pytest --genai-config genai.yaml eval_sets --genai-register": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "pytest-genai models pytest-genai-example": ("tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "pytest-genai promote pytest-genai-example --from staging --to production --reeval --new-alias": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    ".venv/bin/pytest-genai promote pytest-genai-example --from staging --to production --new-alias": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "pytest-genai rollback pytest-genai-example": ("tests/test_release.py::test_release_loop_on_the_bundled_example",),
    ".venv/bin/pytest-genai rollback pytest-genai-example": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "python -c \"import mlflow; m = mlflow.pyfunc.load_model('models:/pytest-genai-example@production'); "
    "print(m.predict([{'question': 'How many days of annual leave do full-time staff get?'}]))\"": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "mlflow models serve -m models:/pytest-genai-example@production --env-manager local -h 127.0.0.1 -p 5001": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    # monitoring: a registered model served by `mlflow models serve`, its traffic, `monitor`
    "pytest --genai-config genai.yaml eval_sets --genai-register": (
        "tests/test_monitor.py::test_served_traffic_is_recorded_redacted_and_held_to_the_slo",),
    "pytest-genai promote pytest-genai-example --from staging --to production": (
        "tests/test_release.py::test_release_loop_on_the_bundled_example",),
    "mlflow models serve -m models:/pytest-genai-example@production --env-manager local -h 127.0.0.1 -p 5001 &": (
        "tests/test_monitor.py::test_served_traffic_is_recorded_redacted_and_held_to_the_slo",),
    "curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d '{\"dataframe_records\": "
    "[{\"question\": \"How many days of annual leave do full-time staff get?\"}]}'": (
        "tests/test_monitor.py::test_served_traffic_is_recorded_redacted_and_held_to_the_slo",),
    # served-request records -> a new eval set: from a local sink file, and from a served version's traces
    "pytest-genai harvest --config genai.yaml --out eval_sets/traffic-2026-12.jsonl --records .pytest-genai/requests.jsonl": (
        "tests/test_harvest.py::test_harvest_samples_a_sanitized_stratified_set_with_provenance",),
    "pytest-genai harvest --config genai.yaml --out eval_sets/traffic-2026-12.jsonl --model pytest-genai-example --alias production": (
        "tests/test_harvest.py::test_harvest_from_a_served_versions_traces",),
    "pytest-genai monitor pytest-genai-example --alias production --since 1h --config genai.yaml": (
        "tests/test_monitor.py::test_served_traffic_is_recorded_redacted_and_held_to_the_slo",),
    "pytest-genai monitor pytest-genai-example --alias production --last 500 --feedback labels.jsonl --config genai.yaml": (
        "tests/test_monitor.py::test_served_traffic_is_recorded_redacted_and_held_to_the_slo",
        "tests/test_monitor.py::test_feedback_joins_on_request_ids"),
    # baselines from a registry or a store
    "pytest --genai-config genai.yaml --genai-baseline models:/pytest-genai-example@production": (
        "tests/test_compare_e2e.py::test_baseline_from_a_models_alias_and_a_missing_alias",),
    "pytest --genai-config genai.yaml --genai-baseline 3f2c9a...": (
        "tests/test_compare_e2e.py::test_a_slightly_worse_candidate_fails_non_inferiority_against_an_mlflow_run",),
    # sharding in GitHub Actions (the group from $GITHUB_RUN_ID); the local form is run on its page
    'pytest --genai-config genai.yaml --genai-shard 1/4 --genai-group "$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT"': (
        "tests/test_shard.py::test_the_group_is_required_outside_github_actions_and_defaults_inside",
        "tests/test_shard.py::test_two_shards_merged_equal_the_unsharded_run_and_the_parent_is_the_eval"),
    'pytest-genai merge "$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT" --config genai.yaml --shards 4': (
        "tests/test_shard.py::test_two_shards_merged_equal_the_unsharded_run_and_the_parent_is_the_eval",),
    # the PostgreSQL-backed, authenticated server on this machine
    'eval "$(make -s server)"': (
        "tests/test_server.py::test_start_prints_only_the_exports_and_a_client_using_them_can_log",),
    "make server-stop": ("tests/test_server.py::test_status_and_stop_are_exact_and_idempotent",),
    # the benchmark tables
    ".venv/bin/python benchmarks/render.py --check --docs docs/benchmarks.md": (
        "tests/test_bench_render.py::test_the_committed_tables_are_what_results_json_gives",),
}

# command -> the .ci/run line that runs it
CI: dict[str, str] = {
    "make eval": "make eval",
    "make test": "make test",
    "make test-slow": "make test-slow",
    "make docs": "make docs",
    "make docs-check": "make docs-check",
}

# command -> why no test runs it
NOT_RUN: dict[str, str] = {
    "pip install torch --index-url https://download.pytorch.org/whl/cpu":
        "the PyTorch CPU index is not reachable from this project's machines (docs/known-limits.md)",
}


# --- reading the docs --------------------------------------------------------------------------------------------

MARKER = re.compile(r"^<!--\s*run(?::\s*(?P<args>[^>]*?))?\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


@dataclass
class Command:
    text: str
    output: list[str] = field(default_factory=list)  # console blocks: the output lines shown after it


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    marker: dict[str, str] | None  # None: not runnable; {} for a bare <!-- run -->

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.marker is not None and self.lang in SHELL


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    lines = page.read_text("utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m["indent"]), m["fence"], m["lang"].lower()
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker_match = MARKER.match(before)
        marker = None
        if marker_match:
            marker = dict(arg.split("=", 1) for arg in (marker_match["args"] or "").replace(",", " ").split() if "=" in arg)
        body = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append(Block(page, i + 1, lang, "\n".join(body) + "\n", marker))
        i = j + 1
    return out


def _strip_comment(line: str) -> str:
    """`line` without a trailing `# comment` (a `#` at the start or after white space, outside quotes)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def _logical(lines: list[str]) -> Iterator[tuple[str, bool]]:
    """(line, is a continuation join) with `\\` continuations joined."""
    buf = ""
    for line in lines:
        if buf:
            buf += " " + line.strip()
        else:
            buf = line
        if buf.rstrip().endswith("\\"):
            buf = buf.rstrip()[:-1].rstrip()
            continue
        yield buf, False
        buf = ""
    if buf:
        yield buf, False


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    if block.lang == "console":
        for line, _ in _logical(block.text.splitlines()):
            if line.startswith("$ "):
                out.append(Command(_strip_comment(line[2:]).strip()))
            elif out and line.strip():
                out[-1].output.append(line.strip())
        return out
    for line, _ in _logical(block.text.splitlines()):
        text = _strip_comment(line).strip()
        if text:
            out.append(Command(text))
    return out


def norm(command: str) -> str:
    return " ".join(command.split())


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p)]


# --- generated pages, the site, YAML ---------------------------------------------------------------------------

def test_the_generated_reference_pages_are_current() -> None:
    """docs/reference/{config,metrics,cli}.md are what scripts/gen_docs.py writes from the code (a fresh process:
    metrics other tests register here are not the registry's)."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\nfix: {FIX_GENERATED}"


def test_the_staleness_check_names_the_page_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gen_docs
    finally:
        sys.path.remove(str(REPO / "scripts"))
    monkeypatch.setattr(gen_docs, "REPO", tmp_path)
    monkeypatch.setattr(gen_docs, "PAGES", {"docs/reference/x.md": lambda: "# X\n\nfrom the code\n"})
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "reference" / "x.md").write_text("# X\n\nedited by hand\n")
    assert gen_docs.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/reference/x.md is stale" in err and f"fix: {FIX_GENERATED}" in err
    assert (tmp_path / "docs" / "reference" / "x.md").read_text() == "# X\n\nedited by hand\n"  # --check writes nothing
    assert gen_docs.main([]) == 0 and gen_docs.main(["--check"]) == 0


def _schema() -> dict[str, Any]:
    return json.loads((REPO / "pytest_genai" / "config" / "schema.json").read_text("utf-8"))


def _key_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, child in node.get("properties", {}).items():
        yield prefix + name
        yield from _key_paths(child, f"{prefix}{name}.")


def test_the_references_name_every_key_option_and_command() -> None:
    config = (DOCS / "reference" / "config.md").read_text("utf-8")
    missing = [k for k in _key_paths(_schema()) if f"| `{k}` |" not in config]
    assert not missing, f"config keys missing from docs/reference/config.md: {missing}; fix: {FIX_GENERATED}"
    cli = (DOCS / "reference" / "cli.md").read_text("utf-8")
    out = subprocess.run([str(BIN / "pytest-genai"), "--help"], capture_output=True, text=True, timeout=120).stdout
    names = re.search(r"\{([a-z,-]+)\}", out)
    assert names, out
    assert [n for n in names[1].split(",") if f"### `pytest-genai {n}`" not in cli] == []
    plugin = (REPO / "pytest_genai" / "plugin.py").read_text("utf-8")
    options = re.findall(r"addoption\(\s*\"(--genai-[a-z-]+)\"", plugin)
    assert options and [o for o in options if f"`{o}" not in cli] == []


def test_the_site_builds_with_strict(tmp_path: Path) -> None:
    """Broken links, missing anchors, pages left out of the nav and a missing snippet all fail the build."""
    proc = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "-q", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "reference/config/index.html", "reference/metrics/index.html", "reference/cli/index.html",
            "benchmarks/index.html", "architecture/index.html", "changelog/index.html"} <= built
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text("utf-8")
    assert "Changelog" in changelog and "--8&lt;--" not in changelog  # the snippet was included


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in extra.items()}}
    return extra


def test_every_yaml_block_parses_and_config_blocks_match_the_schema() -> None:
    """A YAML block whose top-level keys are all config sections is a genai.yaml (or a piece of one): merged into a
    minimal config, it must validate against the shipped schema. Any other YAML block must at least parse."""
    import jsonschema

    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    minimal = {"version": 1, "pipeline": "builtin:llm", "eval": {"set": "cases.jsonl"}}
    problems, configs = [], 0
    for block in all_blocks():
        if block.lang not in ("yaml", "yml"):
            continue
        try:
            data = yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            problems.append(f"{block.where}: does not parse: {exc}")
            continue
        if isinstance(data, dict) and data and set(data) <= set(schema["properties"]):
            configs += 1
            for error in validator.iter_errors(_merge(minimal, data)):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{block.where}: {path}: {error.message}")
    assert not problems, "\n".join(problems)
    assert configs >= 10  # the checker sees the config blocks (a parser change would not skip them silently)


# --- every command: run or mapped ----------------------------------------------------------------------------------

def _shown() -> tuple[dict[str, str], set[str]]:
    """(command -> where it is first shown, the commands a runnable block runs)"""
    shown: dict[str, str] = {}
    run = {SCRATCH}
    for block in all_blocks():
        if block.lang not in SHELL:
            continue
        for command in commands(block):
            key = norm(command.text)
            shown.setdefault(key, block.where)
            if block.runnable:
                run.add(key)
    return shown, run


def test_every_command_shown_is_run_or_mapped() -> None:
    shown, run = _shown()
    mapped = {norm(c) for c in (*MAPPED, *CI, *NOT_RUN)}
    neither = [f"{where}: {command}" for command, where in shown.items() if command not in run | mapped]
    assert not neither, ("commands shown in the docs that are neither run (a `<!-- run -->` block) nor mapped to a "
                         "test (MAPPED, CI or NOT_RUN in tests/test_docs.py):\n" + "\n".join(neither))
    unused = [c for c in mapped if c not in shown]
    assert not unused, f"mapped commands the docs no longer show (remove them from tests/test_docs.py): {unused}"
    both = [c for c in mapped if c in run and c != SCRATCH]
    assert not both, f"commands both run and mapped (remove the mapping): {both}"


def _defines(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text("utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
               for node in ast.walk(tree))


def test_every_mapped_test_exists_and_every_ci_command_is_in_the_ci_script() -> None:
    missing = []
    for command, nodes in MAPPED.items():
        assert nodes, command
        for node in nodes:
            file, _, name = node.partition("::")
            path = REPO / file
            if not path.is_file() or not _defines(path, name.split("[")[0].split("::")[-1]):
                missing.append(f"{node} (for `{command}`)")
    assert not missing, "mapped test nodes that do not exist:\n" + "\n".join(missing)
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    for command, line in CI.items():
        assert re.search(rf"^\s*{re.escape(line)}\s*(#.*)?$", ci, re.M), f"`{command}`: .ci/run has no line `{line}`"
    assert all(reason for reason in NOT_RUN.values())


def test_the_parser_reads_prompts_continuations_comments_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n\n<!-- run: exit=1 -->\n```console\n$ echo a \\\n  b   # note\na b\n...\n$ true\n```\n\n"
                    "  ```bash\n  x --y 'a # not a comment'  # comment\n  # only a comment\n  ```\n"
                    "<!-- run: write=a/b.py -->\n```python\nprint(1)\n```\n")
    console, bash, python = blocks(page)
    assert console.marker == {"exit": "1"} and console.runnable and console.line == 4
    assert [(c.text, c.output) for c in commands(console)] == [("echo a b", ["a b", "..."]), ("true", [])]
    assert bash.marker is None and [c.text for c in commands(bash)] == ["x --y 'a # not a comment'"]
    assert python.marker == {"write": "a/b.py"} and not python.runnable and python.text == "print(1)\n"
    out = ["gates passed: 4 of 4", "answer_words           3          [3, 3] ±0    words     <= 40     pass"]
    assert _matches("answer_words ...words <= 40 pass", out) and _matches("...", []) and _matches("gates passed: 4 of 4", out)
    assert not _matches("gates passed: 5 of 5", out) and not _matches("answer_words ...<= 30 pass", out)


# --- running the runnable blocks -------------------------------------------------------------------------------

RUN_PAGES = [p for p in pages() if any(b.marker is not None for b in blocks(p))]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "MLFLOW_", "OPENAI_", "GITHUB_")) or k.startswith("PYTEST_GENAI_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OPENAI_API_KEY=KEY,
               MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    return env


def _sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _scratch(root: Path, base_url: str, mlflow_template: Path) -> None:
    """`pytest-genai init --starter api`, pointed at the stub. The stub answers with the first words of the passage,
    so the starter's quality bar (f1 >= 0.5, `expect: contains`) is lowered as in tests/test_init.py."""
    root.mkdir()
    done = _sh(SCRATCH, root)
    assert done.returncode == 0, done.stdout + done.stderr
    config = root / "genai.yaml"
    text = config.read_text("utf-8").replace("https://api.openai.com/v1", base_url)
    config.write_text(text.replace('f1: ">= 0.5"', 'f1: ">= 0"'), "utf-8")
    cases = root / "eval_sets" / "starter.jsonl"
    rows = [json.loads(line) for line in cases.read_text("utf-8").splitlines()]
    cases.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "expect"}) + "\n" for r in rows), "utf-8")
    shutil.copyfile(mlflow_template, root / "mlflow.db")  # migrated once per session: the default sqlite:///mlflow.db


def _matches(expected: str, output: list[str]) -> bool:
    if expected == "...":
        return True
    pattern = ".*".join(re.escape(norm(part)) for part in expected.split("..."))
    return any(re.search(pattern, norm(line)) for line in output)


def _apply(block: Block, root: Path) -> str | None:
    """Runs a runnable block or applies a write/merge block; a failure message, or None."""
    marker = block.marker or {}
    if "write" in marker:
        target = root / marker["write"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, "utf-8")
        return None
    if "merge" in marker:
        target = root / marker["merge"]
        merged = _merge(yaml.safe_load(target.read_text("utf-8")), yaml.safe_load(block.text))
        target.write_text(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), "utf-8")
        return None
    if not block.runnable:
        return f"{block.where}: a run marker on a {block.lang or 'plain'} block needs write= or merge="
    expected = int(marker.get("exit", "0"))
    for command in commands(block):
        done = _sh(command.text, root)
        output = (done.stdout + done.stderr).splitlines()
        if done.returncode != expected:
            return (f"{block.where}: `{command.text}` exited {done.returncode}, not {expected}:\n"
                    + "\n".join(output[-60:]))
        missing = [line for line in command.output if not _matches(line, output)]
        if missing:
            return (f"{block.where}: `{command.text}` did not print {missing}; it printed:\n" + "\n".join(output[-60:]))
    return None


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.relative_to(REPO).as_posix() for p in RUN_PAGES])
def test_the_runnable_blocks_of_a_page_pass_in_a_scratch_project(page: Path, tmp_path: Path, stub: Any,
                                                                 mlflow_template: Path) -> None:
    root = tmp_path / "project"
    _scratch(root, stub.base_url, mlflow_template)
    for block in blocks(page):
        if block.marker is not None:
            problem = _apply(block, root)
            assert problem is None, problem


def test_the_runnable_pages_cover_the_guides() -> None:
    """The pages whose commands can run against an API model run them (a page losing its markers fails here)."""
    names = {p.relative_to(REPO).as_posix() for p in RUN_PAGES}
    assert {"docs/concepts/run.md", "docs/concepts/config.md", "docs/concepts/reproducibility.md",
            "docs/guides/api-models.md", "docs/guides/ci.md", "docs/guides/comparing.md", "docs/guides/sharding.md",
            "docs/guides/custom-pipelines.md"} <= names
