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


def counter_for(config: Any) -> tuple[str, Counter]:
    """(what counts, how): see the module doc. A tokenizer that cannot be loaded is the config's error."""
    setting = tokenizer_setting(config)
    if setting == "approx":
        return "approximation (4 characters a token)", approx_tokens
    if setting == "words":
        return "words", word_tokens
    if setting == "model":
        if config.get("llm.provider") != "hf_local":
            raise config.error("llm.tokenizer", "`model` counts with a local model's own tokenizer: only for "
                                                "llm.provider hf_local (use approx, words or a tokenizer folder)")
        from pytest_genai.llm.hf_local import load_tokenizer

        tokenizer = load_tokenizer(config)
        return f"the model's tokenizer ({config.get('llm.model_id')})", lambda m: chat_token_count(tokenizer, m)
    path = config.resolve_path("llm.tokenizer")
    if path is None or not Path(path).is_dir():
        raise config.error("llm.tokenizer", f"{setting!r} is neither model, approx, words nor a tokenizer folder")
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
