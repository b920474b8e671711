"""The house rules, checked on the source (no import of the package): layers with one direction, no import cycle,
one seam per outside system, rooms of a readable size. docs/architecture.md draws the same layers (checked here).

Every import counts: at the top of a module, inside a function, under `if TYPE_CHECKING:`; importing
`a.b.c` also runs the packages `a.b` and `a` (their `__init__`), so that is an edge too (the root package aside:
it imports nothing but `types` at its top)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_genai"
DOC = ROOT / "docs" / "architecture.md"

# Lowest first. A module may import its own layer and the layers below; "tracking" and "report" are side by side
# (neither imports the other). A module belongs to the layer of the longest name in this table that it starts with.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("pytest_genai.names", "pytest_genai.types", "pytest_genai.plain", "pytest_genai.cache_dir",
                    "pytest_genai.environ", "pytest_genai.resolve", "pytest_genai.packaged_models",
                    "pytest_genai.model_hash", "pytest_genai.registry", "pytest_genai.seeding",
                    "pytest_genai.run_folder", "pytest_genai.optional", "pytest_genai.stats", "pytest_genai.runlog",
                    "pytest_genai.threads",
                    "pytest_genai.input_limits",
                    "pytest_genai.config.errors", "pytest_genai.config.suggest", "pytest_genai.config.yaml_lines",
                    "pytest_genai.compare.names")),
    ("measures", ("pytest_genai", "pytest_genai.metrics", "pytest_genai.gates", "pytest_genai.safety.pii",
                  "pytest_genai.safety.pii_detectors", "pytest_genai.safety.pii_secrets",
                  "pytest_genai.sanitize", "pytest_genai.registries", "pytest_genai.policy")),
    ("config", ("pytest_genai.config", "pytest_genai.evalset", "pytest_genai.prompts")),
    ("engines", ("pytest_genai.llm", "pytest_genai.rag", "pytest_genai.pipelines", "pytest_genai.context",
                 "pytest_genai.runtime", "pytest_genai.scoring", "pytest_genai.repeats", "pytest_genai.plan", "pytest_genai.isolate", "pytest_genai.safety",
                 "pytest_genai.compare", "pytest_genai.monitor.aggregate", "pytest_genai.release.bundle",
                 "pytest_genai.release.history")),
    ("tracking", ("pytest_genai.tracking",)),
    ("report", ("pytest_genai.report",)),
    ("application", ("pytest_genai.session", "pytest_genai.record", "pytest_genai.publish", "pytest_genai.startup", "pytest_genai.resume",
                     "pytest_genai.builtin_hooks", "pytest_genai.release", "pytest_genai.monitor",
                     "pytest_genai.reproduce", "pytest_genai.shard", "pytest_genai.harvest", "pytest_genai.dryrun")),
    ("faces", ("pytest_genai.plugin", "pytest_genai.eval_plugin", "pytest_genai.interrupts", "pytest_genai.items", "pytest_genai.state",
               "pytest_genai.hookspec", "pytest_genai.cli", "pytest_genai.report.cli", "pytest_genai.monitor.cli",
               "pytest_genai.reproduce.cli", "pytest_genai.reproduce.__main__", "pytest_genai.harvest.cli", "pytest_genai.dryrun_plugin", "pytest_genai.lock_cmd",
               "pytest_genai.models_cmd", "pytest_genai.runs_cmd", "pytest_genai.scaffold", "pytest_genai.testing")),
)
SIDE_BY_SIDE = {"tracking": "report", "report": "tracking"}
RANK = {"foundation": 0, "measures": 1, "config": 2, "engines": 3, "tracking": 4, "report": 4, "application": 5,
        "faces": 6}
# Imported inside functions only, to keep `import pytest_genai.plugin` (every pytest run) and the CLI light.
HEAVY = {"mlflow", "torch", "transformers", "faiss", "numpy", "sklearn", "pandas", "scipy", "profanity_check",
         "sentence_transformers", "llama_cpp", "jsonschema", "jinja2", "yaml", "psycopg2", "sqlalchemy", "alembic"}
MAX_LINES = 450
MAX_STRING = 2000
LAZY_SHARE = 0.15
MLFLOW_CLIENT_MODULES = 2


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module of the package
    name: str | None  # `from target import name` when name is not a module
    line: int
    lazy: bool  # inside a function


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def _imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text("utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(module, a.name, None, child.lineno, lazy) for a in child.names
                           if a.name.split(".")[0] == "pytest_genai")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                if source.split(".")[0] == "pytest_genai":
                    for a in child.names:
                        sub = f"{source}.{a.name}"
                        out.append(Import(module, sub, None, child.lineno, lazy) if sub in MODULES
                                   else Import(module, source, a.name, child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return out


IMPORTS = [i for m, p in MODULES.items() for i in _imports_of(m, p)]


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        target = i.target
        while target != "pytest_genai":  # importing a.b.c runs a.b's __init__ (and a's: light, see the docstring)
            if target != i.module and target in MODULES and not i.module.startswith(target + "."):
                graph[i.module].add(target)
            target = target.rpartition(".")[0]
        if i.target == "pytest_genai":
            graph[i.module].add("pytest_genai")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in MODULES:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layer_of(module: str) -> str | None:
    best, layer = "", None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, layer = prefix, name
    return layer


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"add these modules to a layer in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_import_cycle_counting_every_import() -> None:
    found = cycles(edges())
    assert not found, "import cycles (every import counts, inside functions too):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_imports_follow_the_layers() -> None:
    wrong = []
    for i in IMPORTS:
        source, target = layer_of(i.module), layer_of(i.target)
        if source is None or target is None:
            continue
        if RANK[target] > RANK[source] or SIDE_BY_SIDE.get(source) == target:
            wrong.append(f"{MODULES[i.module].relative_to(ROOT)}:{i.line}: {i.module} ({source}) imports "
                         f"{i.target} ({target})")
    assert not wrong, "imports against the layer order (faces > application > tracking | report > engines > " \
                      "config > measures > foundation):\n" + "\n".join(wrong)


def test_no_module_imports_another_modules_private_names() -> None:
    private = [f"{MODULES[i.module].relative_to(ROOT)}:{i.line}: {i.name} from {i.target}" for i in IMPORTS
               if i.name and i.name.startswith("_") and not i.name.startswith("__") and i.target != i.module]
    assert not private, "\n".join(private)


def test_internal_imports_inside_functions_are_few() -> None:
    """Imports inside functions defer heavy third-party libraries; the package's own modules come at the top (the
    few exceptions keep `pytest_genai.plugin` light: the eval plugin loads only with --genai-config)."""
    lazy = [i for i in IMPORTS if i.lazy]
    share = len(lazy) / len(IMPORTS)
    assert share <= LAZY_SHARE, (f"{len(lazy)} of {len(IMPORTS)} internal imports ({share:.0%}) sit inside functions; "
                                 f"at most {LAZY_SHARE:.0%}:\n" + "\n".join(
                                     f"{MODULES[i.module].relative_to(ROOT)}:{i.line}: {i.target}" for i in lazy))


def test_modules_are_of_a_readable_size() -> None:
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them): {big}"


def test_no_long_string_literals() -> None:
    """Templates (HTML, CSS, JS, long prose) are package data files, not Python strings."""
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > MAX_STRING:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {len(node.value)} characters")
    assert not long, "\n".join(long)


def test_one_seam_opens_mlflow_clients() -> None:
    opening = sorted(str(p.relative_to(ROOT)) for p in MODULES.values() if "MlflowClient(" in p.read_text("utf-8"))
    assert len(opening) <= MLFLOW_CLIENT_MODULES, f"MlflowClient is constructed in {opening}: ask tracking's seam"


def test_the_architecture_page_draws_these_layers() -> None:
    """docs/architecture.md lists each layer's modules exactly as LAYERS does (regenerate the table with
    `python tests/test_architecture.py`)."""
    assert layer_table() in DOC.read_text("utf-8"), ("docs/architecture.md's layer table is stale: replace it with the "
                                                     "output of `python tests/test_architecture.py`")


def layer_table() -> str:
    rows = ["| layer | may import | modules |", "|---|---|---|"]
    for name, prefixes in reversed(LAYERS):
        below = [n for n, _ in LAYERS if RANK[n] < RANK[name] or (RANK[n] == RANK[name] and n == name)]
        shown = ", ".join(f"`{_short(p)}`" for p in prefixes)
        rows.append(f"| **{name}** | {', '.join(reversed(below))} | {shown} |")
    return "\n".join(rows)


def _short(module: str) -> str:
    return re.sub(r"^pytest_genai\.", "", module)


def figures() -> dict[str, object]:
    """The numbers the closing notes report: `python tests/test_architecture.py --figures`."""
    lazy = sum(i.lazy for i in IMPORTS)
    return {"modules": len(MODULES), "internal_imports": len(IMPORTS), "lazy": lazy,
            "lazy_share": round(lazy / len(IMPORTS), 3), "cycles": [len(c) for c in cycles(edges())],
            "private_imports": sum(1 for i in IMPORTS if i.name and i.name.startswith("_") and not i.name.startswith("__")),
            "largest": sorted(((len(p.read_text("utf-8").splitlines()), str(p.relative_to(ROOT))) for p in MODULES.values()),
                              reverse=True)[:5]}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(figures(), indent=1) if "--figures" in sys.argv else layer_table())
