"""Who is logging an MLflow run, and whether it still can: the process that creates a run (a session, the warm
tracking worker, `merge` filling a group's parent) records itself on it as tags (`genai.owner.*`: a digest of its
host, the host's boot, its pid and the pid's start time), so a command that reads a run still `RUNNING` tells one
being logged from one left behind by a process that was killed (SIGKILL, the OOM killer, a cancelled CI job) and
marks that one: `genai.status` interrupted, `genai.partial` true, `genai.gates_passed` false, terminated KILLED.

The check is only made on the host that created the run (the same hostname, machine id and pid namespace, so two
containers with one hostname are two hosts): from another host a run is left as it is (`ELSEWHERE`). On that host
the owner is gone when the host has rebooted since (Linux: `/proc/sys/kernel/random/boot_id`), when no process has
its pid, when that pid's process is a zombie, or when it started at another time than the owner did (the pid was
reused: Linux `/proc/<pid>/stat`, field 22). Where there is no `/proc` (macOS) the pid alone is checked, so a reused
pid keeps a dead owner's run `RUNNING`: never the other way round. A shard group's parent waiting for
`pytest-genai merge` (`genai.status` pending) has no owner: no process is logging it, and `merge` settles it."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_genai import names
from pytest_genai.runlog import INTERRUPTED

ALIVE, GONE, ELSEWHERE, UNKNOWN = "alive", "gone", "elsewhere", "unknown"  # owner_state
PROC = Path("/proc")


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8").strip()
    except OSError:
        return ""


def host_key() -> str:
    """A digest of what makes pids comparable: hostname, machine id, pid namespace (no hostname is stored)."""
    try:
        pid_ns = os.readlink(PROC / "self" / "ns" / "pid")
    except OSError:
        pid_ns = ""
    parts = (socket.gethostname(), _read(Path("/etc/machine-id")), pid_ns)
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


def boot_id() -> str:
    """This boot of the host (Linux), "" where it cannot be read."""
    return _read(PROC / "sys" / "kernel" / "random" / "boot_id")


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); "" when it exists but that
    cannot be read (no /proc: macOS; /proc mounted hidepid); None when there is no such process, or it is a zombie
    (dead, not yet reaped)."""
    stat = _read(PROC / str(pid) / "stat") if PROC.is_dir() else ""
    if not stat:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            return ""  # another user's process
        return ""
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The tags naming process `pid` (this one by default) as a run's owner."""
    pid = os.getpid() if pid is None else pid
    return {names.TAG_OWNER_HOST: host_key(), names.TAG_OWNER_BOOT: boot_id(), names.TAG_OWNER_PID: str(pid),
            names.TAG_OWNER_STARTED: process_start(pid) or ""}


def owner_state(tags: Mapping[str, str]) -> str:
    """ALIVE, GONE, ELSEWHERE (another host: not checked) or UNKNOWN (no owner recorded: a run logged by an
    earlier release or by another tool, or a shard group's parent)."""
    pid_text = tags.get(names.TAG_OWNER_PID, "")
    if not pid_text.isdigit() or not tags.get(names.TAG_OWNER_HOST):
        return UNKNOWN
    if tags[names.TAG_OWNER_HOST] != host_key():
        return ELSEWHERE
    boot = tags.get(names.TAG_OWNER_BOOT, "")
    if boot and boot_id() and boot != boot_id():
        return GONE  # the host rebooted since
    started = process_start(int(pid_text))
    if started is None:
        return GONE
    recorded = tags.get(names.TAG_OWNER_STARTED, "")
    return GONE if recorded and started and recorded != started else ALIVE  # unknown start: the pid alone decides


@dataclass(frozen=True)
class Unfinished:
    """A run found RUNNING by a command that read it."""

    run_id: str
    state: str  # GONE, ELSEWHERE, ALIVE, UNKNOWN
    pid: str
    marked: bool = False  # GONE, and now marked interrupted (KILLED)
    error: str | None = None  # GONE, but the store refused the marking (a read-only user of a shared server)

    def line(self) -> str:
        """What a command prints about it."""
        who = f"process {self.pid}" if self.pid else "its process"
        if self.marked:
            return (f"run {self.run_id} was left RUNNING by {who}, which is gone (killed before its logging ended): "
                    f"marked {INTERRUPTED} (MLflow status KILLED)")
        if self.state == GONE:
            return f"run {self.run_id} was left RUNNING by {who}, which is gone; not marked: {self.error}"
        if self.state == ELSEWHERE:
            return (f"run {self.run_id} is RUNNING on another host ({who} there): not checked from here, left "
                    "as it is")
        if self.state == ALIVE:
            return f"run {self.run_id} is still being logged by {who} on this host"
        return f"run {self.run_id} is RUNNING with no owner recorded (logged by another tool, or by an earlier release)"


def settle(client: Any, runs: Iterable[Any]) -> dict[str, Unfinished]:
    """Every RUNNING run among `runs` (mlflow Run objects) by id, the dead owners' runs marked interrupted and
    terminated KILLED (their `Run` objects are not updated: read them again). A shard group's parent waiting for
    its merge is not among them (it has no owner)."""
    from mlflow.entities import RunTag

    out: dict[str, Unfinished] = {}
    for run in runs:
        if run.info.status != "RUNNING" or run.info.lifecycle_stage != "active":
            continue
        tags = run.data.tags
        if tags.get(names.TAG_STATUS) == "pending" and tags.get(names.TAG_KIND) == "eval":
            continue  # a group's parent, waiting for `pytest-genai merge`
        rid, state = str(run.info.run_id), owner_state(tags)
        pid = tags.get(names.TAG_OWNER_PID, "")
        if state != GONE:
            out[rid] = Unfinished(rid, state, pid)
            continue
        try:
            client.log_batch(rid, tags=[RunTag(k, v) for k, v in interrupted_tags(tags).items()])
            client.set_terminated(rid, status="KILLED")
        except Exception as exc:  # noqa: BLE001 - the store's refusal is reported, the command goes on
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out[rid] = Unfinished(rid, state, pid, error=f"{type(exc).__name__}: {first[:200]}")
            continue
        out[rid] = Unfinished(rid, state, pid, marked=True)
    return out


def interrupted_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A run whose logging was cut short passed nothing: the record in the store is not whole."""
    note = tags.get(names.TAG_RUN_NOTE, "")
    why = (f"**{INTERRUPTED}**: the process logging this run (pid {tags.get(names.TAG_OWNER_PID, '?')}) ended before "
           "its logging did; the session's run folder has the whole record (`pytest-genai upload FOLDER`).")
    return {names.TAG_STATUS: INTERRUPTED, names.TAG_PARTIAL: "true", names.TAG_GATES_PASSED: "false",
            names.TAG_RUN_NOTE: f"{why}\n\n{note}" if note else why}
