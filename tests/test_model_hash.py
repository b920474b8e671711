"""Model hashes cover the whole model folder, so a tokenizer or config change is a new model: a new
`rag.embed_model_sha256`, a new index fingerprint (no stale index served), a failing pin. Regression for
issue 8: switching off lower-casing in the embedder's tokenizer config kept the fingerprint."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_genai.config import ConfigError, load_config
from pytest_genai.model_hash import FOLDER_COVERS, ModelHashError, model_files, model_sha256
from pytest_genai.rag.corpus import Document
from pytest_genai.rag.embedding import resolve_embedder
from pytest_genai.rag.index import fingerprint

REPO = Path(__file__).resolve().parents[1]
PACKAGED = resolve_embedder("all-minilm-l6-v2", Path("."))
DOCS = {"dome.md": "# Dome\n\nThe dome is serviced every March. Only Theo Brandt may start the dome motor.\n",
        "leave.md": "# Leave\n\nStaff get 28 days of annual leave. Requests go to Mira Tan.\n"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def packaged_sha() -> str:
    return model_sha256(PACKAGED)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "minilm"
    shutil.copytree(PACKAGED, dest)
    return dest


def set_lower_case(folder: Path, value: bool) -> None:
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text("utf-8"))
    assert cfg["do_lower_case"] is True  # the packaged MiniLM lower-cases: the change below is real
    cfg["do_lower_case"] = value
    path.write_text(json.dumps(cfg, indent=2), "utf-8")


def fp_of(sha: str) -> dict[str, Any]:
    docs = [Document(name, text) for name, text in sorted(DOCS.items())]
    settings = {"splitter": "recursive", "chunk_size": 24, "chunk_overlap": 4}
    return fingerprint(docs, settings, "models/minilm", sha, 384, {"type": "flat"})


def write_docs(root: Path) -> None:
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text)


def rag_config(root: Path, **rag: Any) -> Any:
    cfg = {"version": 1, "pipeline": "builtin:rag", "prompt": {"id": "p", "version": 1}, "eval": {"set": "e.jsonl"},
           "rag": {"corpus": "docs", "chunk_size": 24, "chunk_overlap": 4, "retriever_k": 2, **rag}}
    (root / "genai.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(root / "genai.yaml", environ={})


# -- the hash -------------------------------------------------------------------------------------

def test_a_single_file_hashes_to_its_plain_sha256(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    assert model_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


def test_the_folder_hash_covers_every_file_and_not_the_location(model_copy: Path, packaged_sha: str) -> None:
    assert model_sha256(model_copy) == packaged_sha  # a copy elsewhere is the same model
    covered = {f.relative_to(model_copy).as_posix() for f in model_files(model_copy)}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
            "special_tokens_map.json", "1_Pooling/config.json"} <= covered
    set_lower_case(model_copy, False)
    lowered_off = model_sha256(model_copy)
    assert lowered_off != packaged_sha  # (a) the tokenizer change is a new model
    shutil.copy(PACKAGED / "tokenizer_config.json", model_copy / "tokenizer_config.json")
    assert model_sha256(model_copy) == packaged_sha  # the same bytes again: the same model again


def test_each_kind_of_change_is_seen_and_junk_is_not(model_copy: Path, packaged_sha: str) -> None:
    (model_copy / ".git").mkdir()
    (model_copy / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (model_copy / "__pycache__").mkdir()
    (model_copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0junk")
    (model_copy / "download.lock").write_text("")
    assert model_sha256(model_copy) == packaged_sha
    seen = {packaged_sha}
    cfg = model_copy / "1_Pooling" / "config.json"
    cfg.write_text(cfg.read_text().replace("true", "false", 1))  # a nested config file
    seen.add(model_sha256(model_copy))
    (model_copy / "vocab.txt").rename(model_copy / "vocab2.txt")  # same bytes, another name
    seen.add(model_sha256(model_copy))
    (model_copy / "added_tokens.json").write_text("{}")  # a new file
    seen.add(model_sha256(model_copy))
    (model_copy / "added_tokens.json").write_text("")  # an empty file still counts
    seen.add(model_sha256(model_copy))
    assert len(seen) == 5


def test_nothing_to_hash_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelHashError, match="no model file or folder"):
        model_sha256(tmp_path / "missing")
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "HEAD").write_text("x")
    with pytest.raises(ModelHashError, match="has no files"):
        model_sha256(tmp_path / "empty")


# -- the index fingerprint ------------------------------------------------------------------------

def test_the_index_fingerprint_follows_the_tokenizer_config(model_copy: Path, packaged_sha: str) -> None:
    import tokenizers
    import transformers

    before = fp_of(model_sha256(model_copy))
    assert before["inputs"]["embed_model_sha256"] == packaged_sha
    assert before["inputs"]["transformers"] == transformers.__version__
    assert before["inputs"]["tokenizers"] == tokenizers.__version__
    assert "faiss" in before["inputs"]
    set_lower_case(model_copy, False)
    after = fp_of(model_sha256(model_copy))
    assert after["fingerprint"] != before["fingerprint"] and after["version"] != before["version"]  # (b)


@pytest.mark.slow  # real MiniLM embeddings, two indexes
def test_a_changed_tokenizer_builds_a_new_index_instead_of_serving_the_stale_one(tmp_path: Path, model_copy: Path) -> None:
    """The defect end to end (loads MiniLM twice, a few seconds): the second build must not be a cache hit."""
    from pytest_genai.rag.retrieval import build_retriever

    write_docs(tmp_path)
    first, info1 = build_retriever(rag_config(tmp_path, embed_model=str(model_copy)))
    assert not info1.loaded_from_cache
    again, info2 = build_retriever(rag_config(tmp_path, embed_model=str(model_copy)))
    assert info2.loaded_from_cache and again.index.fingerprint == first.index.fingerprint  # the cache still works
    set_lower_case(model_copy, False)
    changed, info3 = build_retriever(rag_config(tmp_path, embed_model=str(model_copy)))
    assert not info3.loaded_from_cache and changed.index.fingerprint != first.index.fingerprint
    assert changed.embedder.sha256 == model_sha256(model_copy) != first.embedder.sha256


# -- pins -----------------------------------------------------------------------------------------

def test_a_pinned_embedder_hash_fails_clearly_after_the_change(tmp_path: Path, model_copy: Path, packaged_sha: str) -> None:
    from pytest_genai.rag.retrieval import build_retriever

    write_docs(tmp_path)
    set_lower_case(model_copy, False)
    new = model_sha256(model_copy)
    with pytest.raises(ConfigError) as err:  # (c) checked from the files, before any model load
        build_retriever(rag_config(tmp_path, embed_model=str(model_copy), embed_model_sha256=packaged_sha))
    message = str(err.value)
    assert "rag.embed_model_sha256:" in message and FOLDER_COVERS in message
    assert "sha256 over every file of the folder" in message
    assert new in message and f"not the pinned {packaged_sha}" in message and str(model_copy) in message


def test_a_pinned_llm_folder_hash_covers_the_whole_folder(tmp_path: Path, model_copy: Path, packaged_sha: str) -> None:
    from pytest_genai.llm.hf_local import HFLocalLLM

    set_lower_case(model_copy, False)
    cfg = {"version": 1, "pipeline": "builtin:llm", "prompt": {"id": "p", "version": 1}, "eval": {"set": "e.jsonl"},
           "llm": {"provider": "hf_local", "model_id": str(model_copy), "model_sha256": packaged_sha}}
    (tmp_path / "genai.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:  # raised before the (here unloadable) model is loaded
        HFLocalLLM.from_config(load_config(tmp_path / "genai.yaml", environ={}))
    message = str(err.value)
    assert "llm.model_sha256:" in message and "sha256 over every file of the folder" in message
    assert model_sha256(model_copy) in message and "the model changed" in message


def test_the_shipped_configs_pin_the_current_hashes() -> None:
    from pytest_genai.llm.hf_local import resolve_weights

    llm_sha = model_sha256(resolve_weights("smollm2-135m-instruct", REPO))
    embed_sha = model_sha256(PACKAGED)
    for name in ("genai.yaml", "genai.passages.yaml", "genai.failing.yaml"):
        cfg = yaml.safe_load((REPO / name).read_text())
        assert cfg["llm"]["model_sha256"] == llm_sha, name
        if "rag" in cfg:
            assert cfg["rag"]["embed_model_sha256"] == embed_sha, name


def test_the_gguf_conversion_cache_key_follows_the_file_hash() -> None:
    from pytest_genai.llm.hf_local import conversion_key

    a = conversion_key("a" * 64)
    assert a == conversion_key("a" * 64) and a != conversion_key("b" * 64) and len(a) == 64 and a != "a" * 64
