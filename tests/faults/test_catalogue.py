"""Every row of the catalogue (catalogue.py) injected into a fresh project and run; its outcome checked: a clear
error (non-zero exit, no traceback, no INTERNALERROR, the file/key/value named) or the survival of every finished
case (on disk in the run folder's results.jsonl, the record's status right)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from faults.catalogue import CATALOGUE, RUN, Clear, Fault, Survives
from faults.project import FaultProject, Ran
from pytest_genai.run_folder import RESULTS_FILE
from pytest_genai.runlog import read_run

DISK_LIMIT = 256 * 1024  # the "disk-full" row: the largest file the session may write


def _param(row: Fault) -> object:
    marks = [pytest.mark.slow] if row.slow else []
    if row.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=row.xfail))
    return pytest.param(row, id=row.id, marks=marks)


def run(row: Fault, project: FaultProject) -> Ran:
    row.inject(project)
    args = [a.replace(RUN, project.latest_run()) if RUN in a else a for a in row.args]
    if row.via == "cli":
        return project.cli(*args)
    if row.via == "subproc":
        return project.pytest_subprocess(*args, timeout=row.timeout)
    if row.via == "subproc-fsize":
        return project.pytest_subprocess(*args, fsize_limit=DISK_LIMIT, timeout=row.timeout)
    assert row.via == "inproc", row.via
    return project.pytest_inprocess(*args)


def tail(out: str, n: int = 30) -> str:
    """The end of a session's output, for a failed row's message."""
    return "\n".join(out.rstrip().splitlines()[-n:])


def traces_end_in(out: str, filename: str) -> bool:
    """Every traceback in `out` ends in a frame of `filename` (the user's code raised, not the harness)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" in line:
            frames = []
            for following in lines[i + 1:]:
                if following.lstrip().startswith('File "'):
                    frames.append(following)
                elif not following.startswith(" "):
                    break
            if not frames or filename not in frames[-1]:
                return False
    return True


def check_clear(expect: Clear, ran: Ran, project: FaultProject) -> None:
    out = ran.out
    assert "INTERNALERROR" not in out, tail(out)
    if expect.user_trace is None:
        assert "Traceback" not in out, tail(out)
    else:
        assert traces_end_in(out, expect.user_trace), tail(out, 60)
    if expect.ret is None:
        assert ran.ret != 0, tail(out)
    else:
        assert ran.ret == expect.ret, f"exit {ran.ret}, expected {expect.ret}\n{tail(out)}"
    for name in expect.names:
        assert name in out, f"{name!r} not in the output:\n{tail(out)}"
    for secret in expect.hides:
        assert secret not in out
    if not expect.run_folder:
        assert project.run_dirs() == [], "a run folder was left by a session that ran no case"


def check_survives(expect: Survives, ran: Ran, project: FaultProject) -> None:
    out = ran.out
    assert "INTERNALERROR" not in out, tail(out)
    if expect.ret is None:
        assert ran.ret != 0, tail(out)
    else:
        assert ran.ret == expect.ret, f"exit {ran.ret}, expected {expect.ret}\n{tail(out)}"
    for name in expect.names:
        assert name in out, f"{name!r} not in the output:\n{tail(out)}"
    dirs = project.run_dirs()
    assert len(dirs) == 1, f"{len(dirs)} run folders\n{tail(out)}"
    run_dir = dirs[0]
    lines = [ln for ln in (run_dir / RESULTS_FILE).read_text("utf-8").splitlines() if ln.strip()]
    on_disk = []
    for n, line in enumerate(lines, 1):
        try:
            on_disk.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{RESULTS_FILE}:{n} is a torn line ({line[:80]!r}...)\n{tail(out)}") from None
    ids = [r["id"] for r in on_disk]
    assert len(ids) == len(set(ids)), f"a case twice on disk: {ids}"
    if expect.at_least:
        assert set(expect.finished) <= set(ids), f"on disk: {ids}, finished: {expect.finished}\n{tail(out)}"
    else:
        assert sorted(ids) == sorted(expect.finished), f"on disk: {ids}, finished: {expect.finished}\n{tail(out)}"
    for r in on_disk:
        if r["id"] in expect.errors:
            assert expect.errors[r["id"]] in (r["error"] or ""), (r["id"], r["error"])
        elif r["id"] in expect.answers:
            assert r["error"] is None and r["answer"] == expect.answers[r["id"]], (r["id"], r["error"], r["answer"])
        else:
            assert r["error"] is None, (r["id"], r["error"])
            assert (r["answer"] or "").split()[0] == f"answer{r['id']}", (r["id"], (r["answer"] or "")[:200])
    record = read_run(run_dir)
    assert record.status == expect.status, f"status {record.status}, expected {expect.status}\n{tail(out)}"
    assert sorted(r.id for r in record.results) == sorted(ids)
    for secret in expect.hides:
        assert secret not in out
        for path in run_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("row", [_param(r) for r in CATALOGUE])
def test_fault(row: Fault, fault_project: FaultProject) -> None:
    ran = run(row, fault_project)
    if isinstance(row.expect, Clear):
        check_clear(row.expect, ran, fault_project)
    else:
        check_survives(row.expect, ran, fault_project)


def test_the_catalogue_has_at_least_40_distinct_rows_each_with_an_outcome() -> None:
    ids = [r.id for r in CATALOGUE]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert len(CATALOGUE) >= 40
    for row in CATALOGUE:
        assert row.what and isinstance(row.expect, (Clear, Survives)), row.id
        assert row.via in ("inproc", "subproc", "subproc-fsize", "cli"), row.id
        if isinstance(row.expect, Clear):
            assert row.expect.names, f"{row.id}: a clear error names the file, key or value"
        else:
            assert set(row.expect.errors) <= set(row.expect.finished), row.id
    kinds = Counter(type(r.expect).__name__ for r in CATALOGUE)
    print(f"{len(CATALOGUE)} rows: {kinds['Clear']} clear errors, {kinds['Survives']} survivals, "
          f"{sum(r.slow for r in CATALOGUE)} slow, {sum(bool(r.xfail) for r in CATALOGUE)} xfail")


def test_the_readme_counts_match_the_catalogue() -> None:
    readme = (Path(__file__).parent / "README.md").read_text("utf-8")
    kinds = Counter(type(r.expect).__name__ for r in CATALOGUE)
    xfails = Counter(type(r.expect).__name__ for r in CATALOGUE if r.xfail)
    counts = (f"{len(CATALOGUE)} rows: {kinds['Clear']} clear errors, {kinds['Survives']} survivals; "
              f"{sum(r.slow for r in CATALOGUE)} slow; {sum(xfails.values())} xfail ({xfails['Clear']} clear errors, "
              f"{xfails['Survives']} survivals)")
    passing = (f"Passing today: {kinds['Clear'] - xfails['Clear']} clear errors and "
               f"{kinds['Survives'] - xfails['Survives']} survivals with nothing lost")
    assert counts in " ".join(readme.split()), counts
    assert passing in " ".join(readme.split()), passing
