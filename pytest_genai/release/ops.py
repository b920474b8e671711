"""`pytest-genai models | promote | rollback`: aliases only (no deprecated stages), every move checked before
anything is written, and recorded (version tags and the registered model's alias history)."""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_genai import names
from pytest_genai.compare.names import stat_name
from pytest_genai.config import load_config
from pytest_genai.config.suggest import suggest_name
from pytest_genai.environ import overridden
from pytest_genai.evalset import load_eval_set
from pytest_genai.gates import evaluate_gates
from pytest_genai.release.bundle import BUNDLE_FORMAT
from pytest_genai.release.history import append_history, pointed, read_history
from pytest_genai.release.register import RegistryError, check_registry_store, verdict
from pytest_genai.sanitize import Sanitizer
from pytest_genai.stats.ci import CI
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.runref import resolve

HEADLINE = ("f1", "em", "hit_at_k", "mrr", "latency_p95_ms", "cost_per_question_usd", "error_rate")


def who() -> str:
    return os.environ.get("GITHUB_ACTOR") or getpass.getuser()


def client_for(uri: str | None) -> Any:
    """A client of the store's model registry (a file store has none: RegistryError)."""
    check_registry_store(uri)
    return mlflow_client.client(uri)


def _model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            from pytest_genai.config.suggest import suggest_name

            known = [m.name for m in client.search_registered_models(max_results=1000)]
            hint = suggest_name(name, known)
            tip = f" — did you mean {hint!r}?" if hint else ""
            raise RegistryError(f"no registered model {name!r}{tip} (registered: {', '.join(known) or 'none'})") from None
        raise


def version_of(client: Any, name: str, alias: str) -> Any:
    model = _model(client, name)
    aliases = dict(getattr(model, "aliases", {}) or {})
    if alias not in aliases:
        shown = ", ".join(f"{a}→v{v}" for a, v in sorted(aliases.items())) or "none"
        raise RegistryError(f"model {name!r} has no alias {alias!r} (aliases: {shown})")
    return client.get_model_version(name, str(aliases[alias]))


def _check_format(version: Any) -> None:
    tags = version.tags or {}
    fmt = tags.get(names.TAG_BUNDLE_FORMAT)
    if fmt != str(BUNDLE_FORMAT):
        by = tags.get(names.TAG_PACKAGED_BY, "an older release or another tool")
        raise RegistryError(f"version {version.version} of {version.name!r} was logged by {by} (bundle format {fmt or 'none'}, "
                            f"this release reads {BUNDLE_FORMAT}): re-register it from a passing eval")


@dataclass(frozen=True)
class Check:
    ok: bool
    lines: tuple[str, ...]


def gate_check(client: Any, version: Any, config_path: Path) -> Check:
    """The version's eval run was full and passes every gate of the config now in force, on the same eval set."""
    config = load_config(config_path)
    tags = version.tags or {}
    run_id = tags.get(names.TAG_EVAL_RUN_ID)
    if not run_id:
        return Check(False, (f"version {version.version} names no eval run ({names.TAG_EVAL_RUN_ID})",))
    run = client.get_run(run_id)
    lines: list[str] = []
    ok = True
    status = run.data.tags.get(names.TAG_STATUS)
    if status != "complete":
        ok = False
        lines.append(f"its eval run {run_id} is {status or 'of unknown status'}, not a full run")
    eval_path = config.resolve_path("eval.set")
    assert eval_path is not None
    here = load_eval_set(eval_path).sha256 if eval_path.is_file() else "(missing)"
    there = run.data.tags.get(names.TAG_EVAL_SET_HASH)
    if here != there:
        ok = False
        lines.append(f"it was evaluated on eval set {there}, the config's {eval_path.name} is {here}: re-evaluate first")
    metrics = run.data.metrics
    has_baseline = bool(run.data.tags.get(names.TAG_BASELINE_RUN_ID))
    gates = evaluate_gates(dict(config.get("gates") or {}), metrics, cis=_logged_cis(metrics, "ci"),
                           deltas=_logged_cis(metrics, "delta_ci"), baseline_available=has_baseline)
    if not gates:
        ok = False
        lines.append(f"{config.path.name} has no gates: promotion needs gates to pass")
    for g in gates:
        value = "n/a" if g.value is None else f"{g.value:.6g}"
        lines.append(f"  {verdict(g):7s} {g.metric} {value} {g.expression}{' (' + g.reason + ')' if g.reason else ''}")
        ok = ok and g.passed  # a skipped gate (a baseline gate of an eval that had no baseline) was not passed
    if any(g.skipped for g in gates):
        lines.append("  a gate of the config in force needs a baseline, and this version's eval had none: re-evaluate it "
                     "with --genai-baseline (e.g. models:/NAME@production), or promote with a config without that gate")
    return Check(ok, tuple(lines))


def _logged_cis(metrics: Mapping[str, float], kind: str) -> dict[str, Any]:
    """The eval's confidence intervals (`<m>_ci_low/high`) or paired delta CIs (`<m>_delta_ci_low/high`), as logged
    by the run, so CI and baseline gates of the config in force are checked against what the eval measured."""
    suffix = f"_{kind}_low"
    out: dict[str, Any] = {}
    for key, low in metrics.items():
        if not key.endswith(suffix):
            continue
        metric = key[: -len(suffix)]
        high = metrics.get(stat_name(metric, f"{kind}_high"))
        if high is None:
            continue
        point = metrics.get(stat_name(metric, "delta") if kind == "delta_ci" else metric, (low + high) / 2)
        out[metric] = CI(low, high, point, (high - low) / 2)
    return out




def reeval_check(client: Any, name: str, version: Any, config_path: Path) -> Check:
    """Load the registered model itself and answer the eval set: the answers and retrieved documents must be the
    ones logged in its eval run, case by case (compared after the same sanitizer)."""
    import mlflow.pyfunc

    config = load_config(config_path)
    run_id = (version.tags or {}).get(names.TAG_EVAL_RUN_ID)
    eval_run = resolve(f"runs:/{run_id}", uri=None, client=client, with_results=True)
    logged = {r.id: r for r in eval_run.record.results}
    eval_path = config.resolve_path("eval.set")
    assert eval_path is not None
    cases = [c for c in load_eval_set(eval_path).cases if c.id in logged]
    rows = [{"id": c.id, "question": c.question, **({"context": c.context} if c.context else {})} for c in cases]

    try:
        with overridden({"GENAI_MONITOR_SINK": "off"}):  # a re-evaluation is not production traffic: nothing recorded
            model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
            out = model.predict(rows)
    except Exception as exc:  # noqa: BLE001 - the model's own failure, named as such
        raise RegistryError(f"not promoting {name} v{version.version}: the registered model failed to load or answer for "
                            f"--reeval: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    san = Sanitizer.from_config(config)
    diffs: list[str] = []
    for case, row in zip(cases, out):
        want = logged[case.id]
        if san.text(row["answer"]) != want.answer:
            diffs.append(f"  {case.id}: answer {san.text(row['answer'])!r} != logged {want.answer!r}")
        if "retrieved_doc_ids" in row:
            docs = [str(r["doc_id"]) for r in want.retrieved]
            if list(row["retrieved_doc_ids"]) != docs:
                diffs.append(f"  {case.id}: retrieved {row['retrieved_doc_ids']} != logged {docs}")
    head = f"re-evaluated v{version.version} on {len(cases)} cases: {len(cases) - len({d.split(':')[0] for d in diffs})} identical"
    return Check(not diffs, (head, *diffs[:20]))


def promote(uri: str | None, name: str, source: str, target: str, config_path: Path, *, reeval: bool = False,
            reason: str = "", by: str | None = None, new_alias: bool = False, echo: Callable[[str], None] = print) -> str:
    """Move alias `target` to the version behind `source`; returns the version. Raises RegistryError (nothing
    moved) when a check fails. An alias the model has never had (`prodution`) is refused unless `new_alias`."""
    check_alias_name(target, "--to")
    if source == target:
        raise RegistryError(f"--from and --to are both {source!r}: nothing to promote")
    client = client_for(uri)
    version = version_of(client, name, source)
    _check_format(version)
    if not new_alias:
        check_known_alias(client, name, target)
    if _current(client, name, target) == str(version.version):
        raise RegistryError(f"{name}@{target} already points at version {version.version} (the version behind @{source}): "
                            "nothing moved")
    check = gate_check(client, version, config_path)
    for line in check.lines:
        echo(line)
    if not check.ok:
        raise RegistryError(f"not promoting {name} v{version.version} ({source}) to {target}: its eval does not pass "
                            f"{config_path.name} now (see above)")
    if reeval:
        again = reeval_check(client, name, version, config_path)
        for line in again.lines:
            echo(line)
        if not again.ok:
            raise RegistryError(f"not promoting {name} v{version.version}: the registered model does not reproduce its eval")
    previous = _current(client, name, target)
    by = by or who()
    _move(client, name, target, str(version.version), previous,
          {"action": "promote", "by": by, "reason": reason or f"from {source}", "from": source})
    return str(version.version)


def known_aliases(client: Any, name: str) -> list[str]:
    """The aliases the model has now and every alias its history (release/history.py) says it ever had."""
    current = dict(getattr(_model(client, name), "aliases", {}) or {})
    past = {str(e["alias"]) for e in read_history(client, name) if e.get("alias")}
    return sorted(set(current) | past)


def check_known_alias(client: Any, name: str, alias: str) -> None:
    known = known_aliases(client, name)
    if alias not in known:
        hint = suggest_name(alias, known)
        tip = f" — did you mean {hint!r}?" if hint else ""
        raise RegistryError(f"{name!r} has never had alias {alias!r}{tip} (known aliases: {', '.join(known) or 'none'}): "
                            "nothing moved; pass --new-alias to create it")


def rollback(uri: str | None, name: str, alias: str = "production", *, reason: str = "", by: str | None = None) -> tuple[str, str]:
    """Point `alias` back at the version it pointed to before the current one; returns (from, to)."""
    client = client_for(uri)
    current = version_of(client, name, alias)
    stack = pointed(read_history(client, name), alias)
    if not stack or stack[-1] != str(current.version):
        raise RegistryError(f"{name}@{alias} points at v{current.version}, which its alias history does not end with "
                            "(moved outside pytest-genai?): use `pytest-genai promote` to set it explicitly")
    if len(stack) < 2:
        raise RegistryError(f"{name}@{alias} has pointed only at v{current.version}: there is no earlier version to roll back to")
    target = stack[-2]
    _move(client, name, alias, target, str(current.version),
          {"action": "rollback", "by": by or who(), "reason": reason or f"rollback from v{current.version}"})
    return str(current.version), target


ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")


def check_alias_name(alias: str, where: str) -> None:
    """MLflow's alias rules, checked before anything is read or written: `latest` and `v<N>` are reserved."""
    if not ALIAS_NAME.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryError(f"{where} {alias!r} is not a usable alias: letters, digits, '_' and '-', not starting with a "
                            "digit; 'latest' and 'v<number>' are reserved by MLflow")


def _current(client: Any, name: str, alias: str) -> str | None:
    aliases = dict(getattr(_model(client, name), "aliases", {}) or {})
    return str(aliases[alias]) if alias in aliases else None


def _move(client: Any, name: str, alias: str, version: str, previous: str | None, entry: dict[str, Any]) -> None:
    """Set the alias, then record it; if recording fails the alias goes back (nothing half-moved)."""
    client.set_registered_model_alias(name, alias, version)
    try:
        history = append_history(client, name, {"alias": alias, "version": version, "previous": previous, **entry})
        client.set_model_version_tag(name, version, names.TAG_PROMOTED_PREFIX + alias, json.dumps(
            {k: history[-1].get(k) for k in ("action", "by", "at", "reason", "previous")}, separators=(",", ":")))
    except Exception:
        if previous is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, previous)
        raise


def list_versions(uri: str | None, name: str) -> list[str]:
    """`pytest-genai models NAME`: versions (newest first) with aliases, gate verdicts, headline metrics, commit."""
    client = client_for(uri)
    model = _model(client, name)
    by_version: dict[str, list[str]] = {}
    for alias, v in (getattr(model, "aliases", {}) or {}).items():
        by_version.setdefault(str(v), []).append(alias)
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))
    lines = [f"{name}: {len(versions)} version(s)"]
    header = ["version", "aliases", "gates", *HEADLINE, "git", "eval run"]
    rows = []
    for v in versions:
        tags = v.tags or {}
        gates = [t for k, t in tags.items() if k.startswith(names.TAG_GATE_PREFIX)]
        passed = sum(1 for t in gates if t.startswith("pass"))
        metrics: dict[str, float] = {}
        run_id = tags.get(names.TAG_EVAL_RUN_ID)
        if run_id:
            try:
                metrics = client.get_run(run_id).data.metrics
            except Exception:
                metrics = {}
        fmt = "" if tags.get(names.TAG_BUNDLE_FORMAT) == str(BUNDLE_FORMAT) else " (older release)"
        rows.append([f"v{v.version}{fmt}", ",".join(sorted(by_version.get(str(v.version), []))) or "-",
                     f"{passed}/{len(gates)}" if gates else "-",
                     *[f"{metrics[m]:.4g}" if m in metrics else "-" for m in HEADLINE],
                     tags.get(names.TAG_GIT_COMMIT, "-")[:10], run_id or "-"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return lines
