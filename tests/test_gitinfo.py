"""git_info against real repositories: untracked (not ignored) files make the tree dirty and are named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_genai.tracking.gitinfo import MAX_DIRTY_PATHS, GitInfo, git_info, parse_porcelain


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A committed tree like a project's: a config, an eval set folder and an ignored run folder."""
    root = tmp_path / "proj"
    (root / "eval_sets").mkdir(parents=True)
    (root / "genai.yaml").write_text("seed: 1\n")
    (root / "eval_sets" / "qa.jsonl").write_text('{"id": "a"}\n')
    (root / ".gitignore").write_text(".pytest-genai/\n*.log\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    return root


def test_a_clean_tree(repo: Path) -> None:
    info = git_info(repo)
    assert info == GitInfo(git(repo, "rev-parse", "HEAD"), False, "main", (), 0)
    assert len(info.commit) == 40


def test_an_untracked_eval_set_makes_the_tree_dirty_and_is_named(repo: Path) -> None:
    (repo / "eval_sets" / "new.jsonl").write_text('{"id": "b"}\n')
    info = git_info(repo)
    assert info.dirty is True
    assert info.dirty_paths == ("untracked: eval_sets/new.jsonl",) and info.dirty_count == 1


def test_an_untracked_folder_is_named_once(repo: Path) -> None:
    (repo / "prompts").mkdir()
    (repo / "prompts" / "qa.yaml").write_text("id: qa\n")
    (repo / "prompts" / "qa2.yaml").write_text("id: qa2\n")
    assert git_info(repo).dirty_paths == ("untracked: prompts/",)


def test_ignored_files_do_not_count(repo: Path) -> None:
    (repo / ".pytest-genai").mkdir()
    (repo / ".pytest-genai" / "run.json").write_text("{}")
    (repo / "debug.log").write_text("x")
    assert git_info(repo) == GitInfo(git(repo, "rev-parse", "HEAD"), False, "main", (), 0)


def test_tracked_changes_are_named_by_kind(repo: Path) -> None:
    (repo / "genai.yaml").write_text("seed: 2\n")
    git(repo, "mv", "eval_sets/qa.jsonl", "eval_sets/qa v2.jsonl")
    (repo / ".gitignore").unlink()
    (repo / "added.txt").write_text("x")
    git(repo, "add", "added.txt")
    info = git_info(repo)
    assert info.dirty is True
    assert sorted(info.dirty_paths) == ["added: added.txt", "deleted: .gitignore", "modified: genai.yaml",
                                        "renamed: eval_sets/qa v2.jsonl"]


def test_dirty_paths_are_capped_but_counted(repo: Path) -> None:
    for i in range(MAX_DIRTY_PATHS + 5):
        (repo / f"new{i:02d}.txt").write_text(str(i))
    info = git_info(repo)
    assert len(info.dirty_paths) == MAX_DIRTY_PATHS == 20 and info.dirty_count == 25
    assert all(p.startswith("untracked: new") for p in info.dirty_paths)


def test_a_subfolder_reports_the_whole_tree_relative_to_its_root(repo: Path) -> None:
    (repo / "notes.md").write_text("x")
    assert git_info(repo / "eval_sets").dirty_paths == ("untracked: notes.md",)


def test_a_repo_with_no_commit_yet_is_dirty(tmp_path: Path) -> None:
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "qa.jsonl").write_text("{}\n")
    git(tmp_path, "init", "-q", "-b", "trunk")
    assert git_info(tmp_path) == GitInfo("unknown", True, "trunk", ("untracked: evals/",), 1)


def test_outside_a_repo_nothing_is_known(tmp_path: Path) -> None:
    ceiling = tmp_path / "nogit"
    ceiling.mkdir()
    # GIT_CEILING_DIRECTORIES keeps git from finding a repository above tmp_path.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
        assert git_info(ceiling) == GitInfo("unknown", None, "unknown", (), 0)


def test_parse_porcelain_skips_the_origin_of_a_rename() -> None:
    raw = "R  new name.txt\0old name.txt\0?? a b.txt\0 M x\0UU conflict.txt\0"
    assert parse_porcelain(raw) == ["renamed: new name.txt", "untracked: a b.txt", "modified: x", "unmerged: conflict.txt"]
