"""Static checks for the GitHub Actions workflows in ``.github/workflows/``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
WORKFLOWS_DIR: Path = REPO_ROOT / ".github" / "workflows"
GENAI_EVAL_WORKFLOW: Path = WORKFLOWS_DIR / "genai-eval.yml"

_USES_RE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
# owner/repo[/path]@<40-hex commit SHA>, followed by a "# vX..." tag comment.
_PINNED_RE = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
_VERSION_COMMENT_RE = re.compile(r"^\s+#\s*v\d")


def _tool(name: str) -> str:
    """Return the path of a dev tool, preferring the running interpreter's venv."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name!r} not found next to {sys.executable} or on PATH; "
            "install the dev dependencies from the lock file."
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command from the repo root and capture its output."""
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _workflow_files() -> list[Path]:
    """All workflow files in the repository."""
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


def test_genai_eval_workflow_matches_schema() -> None:
    """Every workflow (the eval, the sharded eval) validates against the GitHub workflow JSON schema."""
    assert GENAI_EVAL_WORKFLOW.is_file()
    files = _workflow_files()
    assert len(files) >= 2, files
    result = _run(
        _tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        *(str(f.relative_to(REPO_ROOT)) for f in files),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_have_no_zizmor_findings() -> None:
    """zizmor (offline audits) reports no findings; it exits non-zero on any."""
    result = _run(
        _tool("zizmor"),
        "--offline",
        "--no-progress",
        "--color=never",
        str(WORKFLOWS_DIR.relative_to(REPO_ROOT)) + "/",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout + result.stderr
    assert "suppressed" not in result.stdout, result.stdout  # nothing hidden by the default persona either


def test_every_action_is_pinned_to_a_commit_sha() -> None:
    """Each ``uses:`` is pinned to a full 40-hex SHA with a version comment."""
    files = _workflow_files()
    assert files, f"no workflow files under {WORKFLOWS_DIR}"
    seen = 0
    problems: list[str] = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _USES_RE.match(line)
            if match is None:
                continue
            ref = match.group("ref").strip("'\"")
            if ref.startswith("./"):  # local actions/reusable workflows
                continue
            seen += 1
            where = f"{path.relative_to(REPO_ROOT)}:{lineno}: {line.strip()}"
            if not _PINNED_RE.match(ref):
                problems.append(f"not pinned to a 40-hex commit SHA: {where}")
            elif not _VERSION_COMMENT_RE.match(match.group("rest")):
                problems.append(f"missing '# vX.Y.Z' comment: {where}")
    assert seen, "no `uses:` lines found"
    assert not problems, "\n".join(problems)


def _genai_eval_jobs() -> dict:
    import yaml

    data = yaml.safe_load(GENAI_EVAL_WORKFLOW.read_text(encoding="utf-8"))
    assert data.get("permissions") == {}, "workflow-level permissions must stay {} (each job asks for its own)"
    return data["jobs"]


def test_eval_job_writes_the_markdown_summary_into_the_uploaded_folder() -> None:
    """The eval passes --genai-markdown into .pytest-genai/, the folder its artifact uploads."""
    job = _genai_eval_jobs()["genai-eval"]
    run = next(s["run"] for s in job["steps"] if s.get("name") == "Run eval")
    assert "--genai-markdown .pytest-genai/summary.md" in run
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "genai-results" and ".pytest-genai/" in upload["with"]["path"].split()
    assert upload["if"] == "always()" and upload["with"]["include-hidden-files"] is True
    assert job["permissions"] == {"contents": "read"}


def test_pr_comment_job_is_separate_minimal_and_same_repository_only() -> None:
    """Only the comment job may write to the pull request, only for pull requests from this repository, after the
    eval (also when it failed), with the PR number and token through env, never inlined into the script."""
    jobs = _genai_eval_jobs()
    job = jobs["pr-comment"]
    assert job["permissions"] == {"pull-requests": "write"}
    assert [name for name, j in jobs.items() if "write" in (j.get("permissions") or {}).values()] == ["pr-comment"]
    needs = job["needs"]
    assert (needs if isinstance(needs, list) else [needs]) == ["genai-eval"]
    condition = re.sub(r"\s+", " ", job["if"])
    for part in ("!cancelled()", "github.event_name == 'pull_request'",
                 "github.event.pull_request.head.repo.full_name == github.repository"):
        assert part in condition, condition
    steps = job["steps"]
    assert not any(str(s.get("uses", "")).startswith("actions/checkout@") for s in steps), "runs no code of the PR"
    download = next(s for s in steps if str(s.get("uses", "")).startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "genai-results" and download["continue-on-error"] is True
    post = next(s for s in steps if "run" in s)
    assert "${{" not in post["run"], "expressions go through env (zizmor template-injection)"
    assert post["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert post["env"]["PR"] == "${{ github.event.pull_request.number }}"
    body = post["env"]["BODY"]
    assert body == f"{download['with']['path']}/.pytest-genai/summary.md"
    assert '--body-file "$BODY" --edit-last ||' in post["run"] and 'gh pr comment "$PR"' in post["run"]


def test_the_test_suite_does_not_fill_the_job_summary() -> None:
    """The suite's many small eval sessions would each append a markdown summary to $GITHUB_STEP_SUMMARY."""
    job = _genai_eval_jobs()["tests"]
    run = next(s["run"] for s in job["steps"] if s.get("name") == "Run tests")
    assert run.startswith("env -u GITHUB_STEP_SUMMARY ") and "make test" in run
