"""Prompts as code: prompts/<id>.yaml with id, version and a template, rendered in a jinja2 sandbox."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from pytest_genai.config.suggest import suggest_name
from pytest_genai.input_limits import InputLimitError, check_json, check_yaml, not_a_file, read_text

Message = dict[str, str]


class PromptError(Exception):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: str
    template: str | tuple[Message, ...]  # plain text, or chat messages
    path: Path

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.template, str)

    @property
    def hash(self) -> str:
        """sha256 of the canonical template: whitespace and key order in the YAML do not matter."""
        body = self.template if isinstance(self.template, str) else [dict(sorted(m.items())) for m in self.template]
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def render(self, variables: Mapping[str, Any]) -> list[Message]:
        """Chat messages; a plain-text template becomes one user message."""
        out: list[Message] = []
        for i, m in enumerate(self._messages()):
            try:
                out.append({"role": m["role"], "content": _compiled(m["content"]).render(**variables)})
            except Exception as exc:  # jinja2's UndefinedError, SecurityError, TemplateSyntaxError
                raise PromptError(self._render_error(exc, variables, i if self.is_chat else None)) from exc
        return out

    def probe(self, variables: Mapping[str, Any]) -> None:
        """Render once with one case's variables (the pipeline does, when it is built): an undefined
        variable stops the run at start, naming what is available, instead of failing every case."""
        self.render(variables)

    def variables(self) -> frozenset[str]:
        """The names the template reads from its variables (jinja2's undeclared variables, all messages):
        what a pipeline must provide, conditionally used ones included."""
        from jinja2 import meta

        env = _env()
        return frozenset().union(*(meta.find_undeclared_variables(env.parse(m["content"])) for m in self._messages()))

    def _messages(self) -> tuple[Message, ...]:
        if isinstance(self.template, str):
            return ({"role": "user", "content": self.template},)
        return self.template

    def _render_error(self, exc: Exception, variables: Mapping[str, Any], index: int | None) -> str:
        from jinja2 import UndefinedError

        where = f" in template[{index}]" if index is not None else ""
        available = sorted(str(k) for k in variables)
        listed = ", ".join(available) or "none"
        missing = re.fullmatch(r"'([^']+)' is undefined", str(exc)) if isinstance(exc, UndefinedError) else None
        if missing:
            name = missing.group(1)
            hint = suggest_name(name, available)
            mean = f"; did you mean {hint!r}?" if hint else ""
            return (f"prompt {self.ref} ({self.path}): template variable {name!r} is undefined{where}{mean} "
                    f"(variables available: {listed})")
        if isinstance(exc, UndefinedError):  # an attribute or item of a variable: jinja2 names it
            return f"prompt {self.ref} ({self.path}) failed to render{where}: {exc} (variables available: {listed})"
        return f"prompt {self.ref} ({self.path}) failed to render{where}: {exc}"


def _env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    global _ENV
    if _ENV is None or _ENV.undefined is not StrictUndefined:
        # (re)built when jinja2 itself was re-imported (pytester's in-process runs drop modules they imported):
        # an environment of the dropped module would no longer be this module's strict one
        _ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return _ENV


_ENV: Any = None


def _compiled(text: str) -> Any:
    """Compiled once per template text, not once per case (jinja2 templates render thread-safely)."""
    env = _env()
    return _compiled_in(env, text)


@functools.lru_cache(maxsize=256)
def _compiled_in(env: Any, text: str) -> Any:
    return env.from_string(text)


def render_as_text(messages: list[Message]) -> str:
    """One readable string for failure reports and the renders artifact."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def load_prompt(prompt_dir: Path, prompt_id: str, version: str | int) -> PromptTemplate:
    path = prompt_dir / f"{prompt_id}.yaml"
    if not path.is_file():
        why = not_a_file(path)
        if why != "does not exist":
            raise PromptError(f"prompt {prompt_id!r}: cannot read {path}: it {why}")
        available = sorted(p.stem for p in prompt_dir.glob("*.yaml")) if prompt_dir.is_dir() else []
        raise PromptError(f"prompt {prompt_id!r} not found: no file {path} (available: {', '.join(available) or 'none'})")
    try:
        text = read_text(path)  # too big, or not UTF-8
        check_yaml(text, path)  # before the recursive composer: too deep, or aliases expanding without end
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from None
    except InputLimitError as exc:
        raise PromptError(str(exc)) from None
    except OSError as exc:
        raise PromptError(f"{path}: cannot read the prompt file: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping with id, version and template")
    missing = [k for k in ("id", "version", "template") if k not in data]
    if missing:
        raise PromptError(f"{path}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(data) - {"id", "version", "template", "description"})
    if unknown:
        raise PromptError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: id, version, template, description)")
    if str(data["id"]) != prompt_id:
        raise PromptError(f"{path}: id is {data['id']!r} but the file is named for {prompt_id!r}")
    if str(data["version"]) != str(version):
        raise PromptError(
            f"{path}: the config asks for {prompt_id}@{version} but the file holds version {data['version']}; "
            "bump prompt.version in the config or restore the template"
        )
    template = data["template"]
    if isinstance(template, list):
        for i, m in enumerate(template):
            if not isinstance(m, dict) or set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant"):
                raise PromptError(f"{path}{_line(path, i)}: template[{i}] must be {{role: system|user|assistant, content: ...}}")
            content = m["content"]
            if content is None:  # `content:` with nothing after it: YAML null, which would be sent as "None"
                raise PromptError(f"{path}{_line(path, i)}: template[{i}] ({m['role']}) has no content "
                                  "(`content:` is empty; write the text, or quote it)")
            if not isinstance(content, str):
                raise PromptError(f"{path}{_line(path, i)}: template[{i}] ({m['role']}) content must be text, got "
                                  f"{type(content).__name__} {content!r:.40} (quote it in the YAML)")
            if not content.strip():
                raise PromptError(f"{path}{_line(path, i)}: template[{i}] ({m['role']}) has empty content")
        template = tuple({"role": m["role"], "content": m["content"]} for m in template)
        if not template:
            raise PromptError(f"{path}: template is an empty list of chat messages")
    elif isinstance(template, str):
        if not template.strip():
            raise PromptError(f"{path}: template is empty")
    else:
        raise PromptError(f"{path}: template must be a string or a list of chat messages")
    prompt = PromptTemplate(prompt_id, str(version), template, path)
    _check_syntax(prompt)
    return prompt


def _line(path: Path, index: int) -> str:
    """`:N`, the YAML line of chat message `index` (best effort: "" when it cannot be told)."""
    try:
        root = yaml.compose(path.read_text("utf-8"))
        template = next(v for k, v in root.value if k.value == "template")
        return f":{template.value[index].start_mark.line + 1}"
    except Exception:  # an odd layout only loses the line number, never the error
        return ""


def _check_syntax(prompt: PromptTemplate) -> None:
    from jinja2 import TemplateSyntaxError

    texts = [prompt.template] if isinstance(prompt.template, str) else [m["content"] for m in prompt.template]
    for text in texts:
        try:
            _env().parse(text)
        except TemplateSyntaxError as exc:
            raise PromptError(f"{prompt.path}: template syntax error on template line {exc.lineno}: {exc.message}") from None


# -- prompt lock: id@version -> hash, committed, so an edit without a version bump is caught --

def read_lock(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        text = read_text(path)
        check_json(text, path)
        data = json.loads(text)
    except InputLimitError as exc:
        raise PromptError(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError, or a number past Python's digit limit
        raise PromptError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected an object of 'id@version': 'sha256'")
    return {str(k): str(v) for k, v in data.items()}


def write_lock(path: Path, prompts: list[PromptTemplate]) -> dict[str, str]:
    lock = read_lock(path)
    for p in prompts:
        lock[p.ref] = p.hash
    path.write_text(json.dumps(dict(sorted(lock.items())), indent=2) + "\n", "utf-8")
    return lock


def unbumped_edit_message(prompt: PromptTemplate, known_hash: str, where: str) -> str | None:
    if known_hash == prompt.hash:
        return None
    return (
        f"prompt {prompt.ref} ({prompt.path}) was edited without a version bump: its hash is {prompt.hash[:12]} "
        f"but {where} has {prompt.ref} with hash {known_hash[:12]}. Bump 'version' in {prompt.path.name} and "
        "prompt.version in the config (then run `pytest-genai lock-prompts <config>`), or restore the template."
    )
