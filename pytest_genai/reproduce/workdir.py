"""The re-run's folder: a temporary project laid out like the original (the same relative paths, so the config
and its config_hash are the run's), holding the run's config, prompt and eval set, with what a run folder does not
carry (the RAG corpus, a reranker or model folder, the conftest, the pipeline's own module and its declared
`pipeline.artifacts`, whose contents are part of config_hash) taken from the
original project folder. Every choice is said in `inputs` or `warnings`, so the report can say what was re-run.

Which file is used, each time the one that is provably the run's (its hash is the recorded one):
- config: the run's config.resolved.yaml; the project's config file when the resolved one is not the run's
  (redaction rewrote a value: an IP address in llm.base_url); else the resolved one, with a warning.
- prompt: the run's prompt/ copy (the prompt file as it was run, byte for byte unless redaction rewrote it), or
  with `--prompt-from project` the project's prompt file as it is now (re-run the run with today's prompt).
- eval set: the project's file when its sha256 is the run's eval_set.hash; else the run's eval_set/ snapshot,
  which is sanitized (PII redacted, lines re-serialised), with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from pytest_genai.config import ConfigError, load_config
from pytest_genai.config.validate import SECRET_REF
from pytest_genai.prompts import PromptError, load_prompt
from pytest_genai.reproduce.source import CONFIG_FILE, ReproduceError, RunSource
from pytest_genai.run_folder import EVAL_SET_DIR
from pytest_genai.tracking.envlock import EnvLockError, read_lock

LINKED_KEYS = ("rag.corpus", "rag.reranker.path", "rag.embed_model", "llm.model_id")  # paths into the project
REQUIRED_LINKS = ("rag.corpus", "rag.reranker.path")  # the others may name a packaged model instead of a path
NO_KEY = "reproduce-replay-makes-no-provider-call"
SELECT_PLUGIN = "_genai_reproduce_select"
_SELECT_SOURCE = '''"""pytest-genai reproduce: only the cases the run had (it was partial), by case id."""
import json
import os

_IDS = set(json.loads(open(os.environ["GENAI_REPRODUCE_IDS"], encoding="utf-8").read()))


def pytest_collection_modifyitems(config, items):
    from pytest_genai.items import CaseItem

    keep = [i for i in items if not isinstance(i, CaseItem) or i.case.id in _IDS]
    drop = [i for i in items if isinstance(i, CaseItem) and i.case.id not in _IDS]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
'''


@dataclass(frozen=True)
class Layout:
    workdir: Path  # where the re-run's config is (the pytest invocation folder)
    config_path: Path
    eval_set: Path
    results_dir: Path
    pytest_args: tuple[str, ...]
    env: Mapping[str, str]  # added to the environment of the re-run
    inputs: tuple[str, ...]  # where each input came from
    warnings: tuple[str, ...]
    config: Any  # the re-run's GenaiConfig (its sanitizer prints the report)
    replay: bool


class _AnyEnv(Mapping[str, str]):
    """Every ${NAME} resolves: a config's hash is of its public form, whichever secrets are set here."""

    resolves_any = True  # load_config: not a real environment (an empty value here says nothing)

    def __getitem__(self, key: str) -> str:
        return ""

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _load(path: Path, environ: Mapping[str, str] | None = None, artifact_root: Path | None = None) -> Any:
    return load_config(path, environ=_AnyEnv() if environ is None else environ, artifact_root=artifact_root)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(value: Any) -> str | None:
    """A relative path value (absolute ones are used where they are)."""
    if not isinstance(value, str) or not value:
        return None
    return None if os.path.isabs(os.path.expanduser(value)) else value


def _glob_root(value: str) -> str:
    parts = []
    for part in Path(value).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _ups(value: str) -> int:
    parts = Path(os.path.normpath(value)).parts
    n = 0
    while n < len(parts) and parts[n] == "..":
        n += 1
    return n


def _at(workdir: Path, rel: str) -> Path:
    return Path(os.path.normpath(workdir / rel))


def _link(src: Path, dst: Path) -> None:
    """dst -> src; into a folder we made ourselves (an eval set lives under the corpus folder) child by child."""
    if dst.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            if not (dst / child.name).exists():
                (dst / child.name).symlink_to(child.resolve())
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve())


def _choose_config(source: RunSource, project: Path) -> tuple[Path, Any, list[str], list[str]]:
    """(the config file to re-run, it loaded, inputs, warnings)."""
    p = source.record.provenance
    resolved = source.folder / CONFIG_FILE
    try:
        theirs = _load(resolved, artifact_root=project)  # its pipeline.artifacts: the project's, as they are now
    except ConfigError as exc:
        raise ReproduceError(f"the run's {CONFIG_FILE} is not a valid config for this pytest-genai: {exc}") from None
    run_hash = theirs.hash
    if run_hash == p.config_hash:
        return resolved, theirs, [f"config: the run's {CONFIG_FILE} (config_hash {p.config_hash[:12]})"], []
    mine = project / p.config_path if p.config_path else None
    if mine is not None and mine.is_file():
        try:
            ours = _load(mine)
        except ConfigError:
            ours = None
        if ours is not None and ours.hash == p.config_hash:
            return mine, ours, [f"config: the project's {p.config_path} (config_hash {p.config_hash[:12]}; the run's "
                                f"{CONFIG_FILE} hashes to {run_hash[:12]}: redaction rewrote a value in it)"], []
    why = (f"the run's {CONFIG_FILE} hashes to {run_hash[:12]}, not its config_hash {p.config_hash[:12]} (a value in it "
           f"was redacted), and the project has no {p.config_path or 'config'} with that hash: re-running the redacted "
           "config (a redacted value such as llm.base_url changes what is asked and replay keys)")
    return resolved, theirs, [f"config: the run's {CONFIG_FILE} (config_hash {run_hash[:12]})"], [why]


def lay_out(source: RunSource, project: Path, root: Path, *, prompt_from: str = "run", cassette: Path | None = None,
            live: bool = False) -> Layout:
    """Write the re-run's project under `root` (a fresh temporary folder) and say what it was built from."""
    record, p = source.record, source.record.provenance
    project = project.resolve()
    config_file, cfg, inputs, warnings = _choose_config(source, project)
    data = yaml.safe_load(config_file.read_text("utf-8")) or {}
    results_dir = root / "runs"
    data["tracking"] = {"enabled": False, "results_dir": str(results_dir),
                        "experiment": str(cfg.get("tracking.experiment") or "pytest-genai")}
    if isinstance(data.get("registry"), dict):
        data["registry"]["register_on_pass"] = False
    if isinstance(data.get("compare"), dict):
        data["compare"].pop("baseline", None)  # a re-run is compared with its run, not with a baseline

    paths = [cfg.get("prompt.dir") if cfg.get("prompt") else None, cfg.get("eval.set"), cfg.get("env.lock_file"),
             *(cfg.get(k) for k in LINKED_KEYS)]
    depth = max([_ups(v) for v in map(_rel, paths) if v] or [0])
    workdir = root.joinpath("project", *["sub"] * depth)  # `../shared/corpus` stays inside `root`
    workdir.mkdir(parents=True)
    (workdir / "pytest.ini").write_text("[pytest]\n", "utf-8")  # the rootdir: no ini file above the temp folder

    _place_prompt(source, project, workdir, cfg, prompt_from, inputs, warnings)
    eval_set = _place_eval_set(source, project, workdir, cfg, data, inputs, warnings)
    _place_lock(source, workdir, cfg, warnings)
    taken = _link_project(project, workdir, cfg, warnings)
    inputs.append(f"from the project {project}: " + (", ".join(taken) if taken else "nothing (the config names no "
                                                                                     "corpus, conftest or own module)"))

    args: list[str] = []
    env: dict[str, str] = {"PYTHONPATH": os.pathsep.join([str(project), str(root / "plugins"),
                                                          *filter(None, [os.environ.get("PYTHONPATH")])]),
                           "PYTHONDONTWRITEBYTECODE": "1"}  # the project's own module is imported: no __pycache__ in it
    cassette = cassette if cassette is not None else (None if live else source.cassette)
    replay = cassette is not None
    if replay:
        assert cassette is not None
        args += ["--genai-cache", "replay", "--genai-cassette", str(cassette.resolve())]
        named = f"the run's cassette {cassette.name}" if cassette.parent == source.folder else f"the cassette {cassette}"
        inputs.append(f"answers: replayed from {named} (--genai-cache replay: no provider is called)")
        for name in _llm_env_refs(data):
            if name not in os.environ:
                env[name] = NO_KEY
                warnings.append(f"${{{name}}} (llm) is not set: a placeholder stands in, since a replay calls no provider")
    else:
        mode = record.execution.cache_mode
        if mode in ("replay", "read-write"):
            warnings.append(f"the run answered from a response cache (--genai-cache {mode}) that its folder does not hold: "
                            "the re-run calls the model; pass --cassette FILE to replay a cassette instead")
        inputs.append("answers: generated again (no cassette" + (", --live" if live and source.cassette else "") + ")")
    if record.execution.repeat > 1:
        args += ["--genai-repeat", str(record.execution.repeat)]
    if record.status != "complete":
        ids = root / "plugins" / "case_ids.json"
        ids.parent.mkdir(parents=True, exist_ok=True)
        ids.write_text(json.dumps([r.id for r in record.results]), "utf-8")
        (root / "plugins" / f"{SELECT_PLUGIN}.py").write_text(_SELECT_SOURCE, "utf-8")
        args += ["-p", SELECT_PLUGIN]
        env["GENAI_REPRODUCE_IDS"] = str(ids)
        inputs.append(f"cases: the run's {len(record.results)} (it was {record.status}), selected by id")

    config_path = workdir / (Path(p.config_path).name if p.config_path else "genai.yaml")  # the run's file name
    config_path.write_text("# pytest-genai reproduce: the run's config; tracking off, results in the temp folder\n"
                           + yaml.safe_dump(data, sort_keys=False), "utf-8")
    try:
        final = _load(config_path, {**os.environ, **env})
    except ConfigError as exc:
        raise ReproduceError(f"the run's config cannot be loaded here: {exc}") from None
    return Layout(workdir, config_path, eval_set, results_dir, tuple(args), env, tuple(inputs), tuple(warnings), final,
                  replay)


def _llm_env_refs(data: Mapping[str, Any]) -> list[str]:
    llm = data.get("llm") or {}
    return sorted({m.group(1) for v in llm.values() if isinstance(v, str) for m in SECRET_REF.finditer(v)})


def _place_prompt(source: RunSource, project: Path, workdir: Path, cfg: Any, prompt_from: str, inputs: list[str],
                  warnings: list[str]) -> None:
    if cfg.get("prompt") is None:
        return
    recorded = source.record.provenance.prompt_hash
    pid, version, pdir = str(cfg.get("prompt.id")), cfg.get("prompt.version"), str(cfg.get("prompt.dir"))
    name = f"{pid}.yaml"
    mine = Path(pdir) / name if not _rel(pdir) else project / pdir / name
    if not _rel(pdir):
        inputs.append(f"prompt: {mine} as it is now (prompt.dir is an absolute path)")
        return
    theirs = source.artifact("prompt", name)
    src = theirs if prompt_from == "run" else mine
    if src is None or not src.is_file():
        what = f"the run's prompt/{name}" if prompt_from == "run" else f"the project's {Path(pdir) / name}"
        raise ReproduceError(f"{what} does not exist: the re-run needs prompt {pid}@{version}"
                             + (" (try --prompt-from project)" if prompt_from == "run" and mine.is_file() else ""))
    dest = _at(workdir, pdir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)

    def hash_of(folder: Path) -> str | None:
        try:
            return load_prompt(folder, pid, version).hash
        except PromptError:
            return None

    used, project_hash = hash_of(dest.parent), hash_of(mine.parent) if mine.is_file() else None
    label = f"the run's prompt/{name}" if prompt_from == "run" else f"the project's {Path(pdir) / name} (--prompt-from project)"
    inputs.append(f"prompt: {pid}@{version} from {label} (hash {(used or '?')[:12]})")
    if used != recorded:
        warnings.append(f"the prompt used ({label}) hashes to {(used or 'nothing: it does not load')[:12]}, the run's "
                        f"prompt.hash is {(recorded or 'none')[:12]}: answers may differ because of the prompt")
        if prompt_from == "run" and project_hash == recorded:
            warnings.append(f"the project's {Path(pdir) / name} has the run's prompt hash: --prompt-from project uses it")
    elif prompt_from == "run" and mine.is_file() and project_hash != recorded:
        warnings.append(f"the project's {Path(pdir) / name} is not the run's prompt any more (hash "
                        f"{(project_hash or '?')[:12]}); the re-run used the run's (--prompt-from project to re-run "
                        "with the project's)")


def _place_eval_set(source: RunSource, project: Path, workdir: Path, cfg: Any, data: dict[str, Any],
                    inputs: list[str], warnings: list[str]) -> Path:
    p = source.record.provenance
    value = str(cfg.get("eval.set"))
    name = Path(value).name
    if not _rel(value):
        path = Path(os.path.expanduser(value))
        if not path.is_file() or _sha256(path) != p.eval_set_hash:
            warnings.append(f"eval.set {value} is an absolute path and is not the run's eval set now (eval_set.hash "
                            f"{p.eval_set_hash[:12]})")
        inputs.append(f"eval set: {value} as it is now (an absolute path)")
        return path
    mine, snapshot = project / value, source.artifact(EVAL_SET_DIR, name)
    dest = _at(workdir, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if mine.is_file() and _sha256(mine) == p.eval_set_hash:
        shutil.copyfile(mine, dest)
        inputs.append(f"eval set: the project's {value} (its sha256 is the run's eval_set.hash)")
        return dest
    if snapshot is None:
        raise ReproduceError(f"no eval set to re-run: the run has no eval_set/{name} snapshot and the project's {mine} "
                             + ("is not the run's (another sha256)" if mine.is_file() else "does not exist")
                             + " (--project DIR names the folder the run's config was in)")
    shutil.copyfile(snapshot, dest)
    state = "is not the run's (another sha256)" if mine.is_file() else "does not exist"
    inputs.append(f"eval set: the run's eval_set/{name} snapshot")
    warnings.append(f"the project's {value} {state}: the run's sanitized snapshot is re-run instead; cases whose PII "
                    "was redacted in it may answer differently, and its eval_set.hash is not the run's by construction")
    if isinstance(data.get("eval"), dict) and data["eval"].pop("sha256", None):
        warnings.append("eval.sha256 is left out of the re-run's config (it pins the original file; the config_hash "
                        "changes with it)")
    return dest


def _place_lock(source: RunSource, workdir: Path, cfg: Any, warnings: list[str]) -> None:
    """The run's copy of its lock where the config names it, so the re-run measures env_drift against it."""
    p = source.record.provenance
    value = _rel(cfg.get("env.lock_file"))
    if value is None or p.env_lock_hash is None or not p.env_lock_file:
        return
    copy = source.artifact("env", p.env_lock_file)
    if copy is None:
        return
    try:
        read_lock(copy)
    except EnvLockError as exc:
        warnings.append(f"the run's copy of {p.env_lock_file} does not read as a lock ({exc}): the re-run has none")
        return
    dest = _at(workdir, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(copy, dest)


def _link_project(project: Path, workdir: Path, cfg: Any, warnings: list[str]) -> list[str]:
    taken: list[str] = []
    for key in LINKED_KEYS:
        value = _rel(cfg.get(key))
        if value is None:
            continue
        rel = _glob_root(value) if key == "rag.corpus" and any(ch in value for ch in "*?[") else value
        src = project / rel
        if not src.exists():
            if key in REQUIRED_LINKS:
                warnings.append(f"{key} {value}: not in the project folder {project} (--project DIR names the folder "
                                "the run's config was in)")
            continue
        _link(src, _at(workdir, rel))
        taken.append(f"{key} {value}")
    for rel in cfg.pipeline.artifacts:  # validated at load: inside the project, present
        if not os.path.lexists(_at(workdir, rel)):  # else already there (under a linked corpus, the eval set)
            _link(project / rel, _at(workdir, rel))
        taken.append(f"pipeline.artifacts {rel}")
    if (project / "conftest.py").is_file():
        _link(project / "conftest.py", workdir / "conftest.py")
        taken.append("conftest.py")
    spec = cfg.pipeline.factory
    if not spec.startswith("builtin:"):
        top = spec.split(":", 1)[0].split(".")[0]
        here = (project / f"{top}.py").is_file() or (project / top).is_dir()
        taken.append(f"the pipeline's module {spec.split(':', 1)[0]}" + (" (on PYTHONPATH)" if here else
                                                                         " (imported from the environment)"))
    return taken
