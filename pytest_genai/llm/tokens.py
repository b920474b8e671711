"""Counting a request's input tokens without calling the model (the dry run's and the budget's estimate), and the
LLM that only counts.

`llm.tokenizer` says how:
* `model`  (the default for `hf_local`): the model's own tokenizer and chat template, as generation encodes it, so the
           count is the one a real call reports;
* `approx` (the default for any other provider): OpenAI's rule of thumb for English, 4 characters a token, plus 3
           tokens per message and 3 to prime the reply (their chat format's overhead);
* `words`: white-space separated words (what a word-counting server reports, e.g. the bundled OpenAI stub);
* a path to a local tokenizer folder (`tokenizer.json` & co., relative to the config): that tokenizer's chat
           template when it has one, else the contents joined by blank lines.
Tokenizers load offline (local files only), once."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from pytest_genai.llm.base import Generation, Message, check_messages

APPROX_CHARS_PER_TOKEN = 4
APPROX_PER_MESSAGE = 3
APPROX_REPLY_PRIMING = 3
BUILTIN_COUNTERS = ("model", "approx", "words")

Counter = Callable[[Sequence[Message]], int]


def approx_tokens(messages: Sequence[Message]) -> int:
    return APPROX_REPLY_PRIMING + sum(APPROX_PER_MESSAGE + math.ceil(len(m["content"]) / APPROX_CHARS_PER_TOKEN)
                                      for m in messages)


def word_tokens(messages: Sequence[Message]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def chat_token_count(tokenizer: Any, messages: Sequence[Message]) -> int:
    """Input ids of a chat request as hf_local encodes it: the chat template with the generation prompt, else the
    contents joined by blank lines."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding on some versions
            ids = ids["input_ids"]
        return len(ids)
    return len(tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"])


# Tokenizer classes that encode with tokenizer.json as saved (transformers 5's generic backend, 4's fast one); a
# model's own class may rebuild the pre-tokenizer from its vocabulary (transformers 5.0 does for a GGUF's Llama).
AS_SAVED = ("TokenizersBackend", "PreTrainedTokenizerFast")
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def template_counter(folder: Path, any_class: bool = False) -> Counter | None:
    """The chat-template count of `chat_token_count` without transformers (its import and a tokenizer load take
    seconds; this takes a tenth of one): tokenizer.json through `tokenizers`, the chat template rendered as
    transformers renders it (a sandboxed jinja2 with trim_blocks, lstrip_blocks and loop controls, the special tokens
    and `raise_exception` in scope) and encoded as it encodes it (no special tokens added: the template has them).
    None when the folder has no tokenizer.json or no chat template, its tokenizer class is a model's own (not in
    AS_SAVED; `any_class`: a GGUF's converted copy, which hf_local reads as saved whatever its class), or the template
    needs more: then transformers counts."""
    tokenizer_file, config_file, template_file = (folder / "tokenizer.json", folder / "tokenizer_config.json",
                                                  folder / "chat_template.jinja")
    if not tokenizer_file.is_file() or not config_file.is_file():
        return None
    try:
        settings = json.loads(config_file.read_text("utf-8"))
        if not any_class and settings.get("tokenizer_class") not in AS_SAVED:  # a model's own may rebuild it
            return None
        source = template_file.read_text("utf-8") if template_file.is_file() else settings.get("chat_template")
        if not isinstance(source, str) or not source:
            return None
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        template = env.from_string(source)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception:  # noqa: BLE001 - anything unusual (a {% generation %} tag, an old tokenizers): transformers
        return None
    specials = {k: (v.get("content") if isinstance(v, dict) else v) for k, v in settings.items() if k in SPECIAL_TOKENS}

    def count(messages: Sequence[Message]) -> int:
        text = template.render(messages=list(messages), add_generation_prompt=True, tools=None, documents=None,
                               **specials)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


def tokenizer_setting(config: Any) -> str:
    """`llm.tokenizer`, or its default for the provider."""
    value = config.get("llm.tokenizer")
    if value:
        return str(value)
    return "model" if config.get("llm.provider") == "hf_local" else "approx"


def counter_name(config: Any) -> str:
    """What counts the input tokens, in words (without loading anything)."""
    setting = tokenizer_setting(config)
    return {"approx": "approximation (4 characters a token)", "words": "words",
            "model": f"the model's tokenizer ({config.get('llm.model_id')})"}.get(setting, f"the tokenizer folder {setting}")


def check_tokenizer(config: Any) -> None:
    """`llm.tokenizer` as far as it can be checked without loading anything (`pytest-genai validate`): `model` only
    for hf_local, a folder that exists. A ConfigError naming the key."""
    setting = tokenizer_setting(config)
    if setting == "model" and config.get("llm.provider") != "hf_local":
        raise config.error("llm.tokenizer", "`model` counts with a local model's own tokenizer: only for "
                                            "llm.provider hf_local (use approx, words or a tokenizer folder)")
    if setting not in BUILTIN_COUNTERS:
        path = config.resolve_path("llm.tokenizer")
        if path is None or not Path(path).is_dir():
            raise config.error("llm.tokenizer", f"{setting!r} is neither model, approx, words nor a tokenizer folder "
                                                f"(no folder {path})")


def counter_for(config: Any) -> tuple[str, Counter]:
    """(what counts, how): see the module doc. A tokenizer that cannot be loaded is the config's error."""
    setting = tokenizer_setting(config)
    if setting == "approx":
        return "approximation (4 characters a token)", approx_tokens
    if setting == "words":
        return "words", word_tokens
    check_tokenizer(config)
    if setting == "model":
        from pytest_genai.llm.hf_local import load_tokenizer, tokenizer_folder

        name = f"the model's tokenizer ({config.get('llm.model_id')})"
        weights, folder = tokenizer_folder(config)
        fast = template_counter(folder, any_class=folder != weights) if folder is not None else None
        if fast is not None:
            return name, fast
        tokenizer = load_tokenizer(config)
        return name, lambda m: chat_token_count(tokenizer, m)
    path = config.resolve_path("llm.tokenizer")
    assert path is not None  # check_tokenizer: a folder
    fast = template_counter(Path(path))
    if fast is not None:
        return counter_name(config), fast
    from pytest_genai.llm.hf_local import quiet_transformers

    quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers' errors vary: one line naming the key
        raise config.error("llm.tokenizer", f"cannot load a tokenizer from {path}: {type(exc).__name__}: {exc}") from None
    return counter_name(config), lambda m: chat_token_count(tokenizer, m)


class CountingLLM:
    """Stands in for the provider in a dry run: counts each request's input tokens, answers nothing, calls no model."""

    concurrent = True

    def __init__(self, model_id: str, counter: Counter) -> None:
        self.model_id = model_id
        self.model_sha256: str | None = None
        self.counter = counter

    @classmethod
    def from_config(cls, config: Any) -> "CountingLLM":
        return cls(str(config.get("llm.model_id")), counter_for(config)[1])

    def generate(self, messages: list[Message], *, seed: int) -> Generation:
        check_messages(messages)
        return Generation(text="", input_tokens=self.counter(messages), output_tokens=0)
