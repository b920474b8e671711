"""RAG: chunking edge cases, the index fingerprint, cache reuse across processes, retrieval metrics,
MMR, and the invalid-config errors. Real MiniLM embeddings and real faiss, on small corpora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_genai.config import ConfigError, load_config
from pytest_genai.metrics.retrieval import context_used, hit_at_k, recall_at_k, reciprocal_rank
from pytest_genai.rag.chunking import chunk_document
from pytest_genai.rag.corpus import CorpusError, Document, load_corpus

DOCS = {
    "leave.md": "# Leave\n\nStaff get 28 days of annual leave. Requests go to Mira Tan before the first of the month.\n",
    "parking.md": "# Parking\n\nThe car park opens at 6 am. Bay 12 is reserved for visitors and the director.\n",
    "library.md": "# Library\n\nThe library closes at 9 pm. Rare books are kept in Room B4 under the stairs.\n",
    "dome.md": "# Dome\n\nThe dome is serviced every March. Only Theo Brandt may start the dome motor.\n",
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from pytest_genai.rag.embedding import resolve_embedder

    return AutoTokenizer.from_pretrained(str(resolve_embedder("all-minilm-l6-v2", Path("."))), local_files_only=True)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    return cache


def n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# -- chunking -------------------------------------------------------------------------------------

LONG = ("The observatory opened in 1931. " * 3 + "\n\n" + "Its dome was rebuilt after the storm of 1987, and again later. " * 4
        + "\n\n" + "Visitors may book tours on weekdays. " * 5)


@pytest.mark.parametrize("splitter", ["fixed", "sentence", "recursive"])
def test_chunks_are_substrings_within_size_and_cover_the_text(tokenizer: Any, splitter: str) -> None:
    doc = Document("a.md", LONG)
    chunks = chunk_document(doc, tokenizer, splitter, 24, 6)
    assert len(chunks) > 3 and [c.id for c in chunks] == [f"a.md#{i}" for i in range(len(chunks))]
    for c in chunks:
        assert c.text in LONG and c.n_tokens <= 24 and c.n_tokens == n_tokens(tokenizer, c.text)
    assert LONG.strip().startswith(chunks[0].text[:20]) and LONG.strip().endswith(chunks[-1].text[-20:])


def test_fixed_windows_overlap_by_exactly_the_overlap(tokenizer: Any) -> None:
    ids = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    chunks = chunk_document(Document("a", LONG), tokenizer, "fixed", 20, 5)
    assert len(chunks) == 1 + -(-(len(ids) - 20) // 15)
    first, second = (tokenizer(c.text, add_special_tokens=False)["input_ids"] for c in chunks[:2])
    assert first[-5:] == second[:5]


def test_sentence_splitter_keeps_sentences_whole_when_they_fit(tokenizer: Any) -> None:
    text = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa lambda mu."
    chunks = chunk_document(Document("s", text), tokenizer, "sentence", 9, 0)
    assert [c.text for c in chunks] == ["Alpha beta gamma. Delta epsilon zeta.", "Eta theta iota. Kappa lambda mu."]


def test_recursive_splitter_prefers_paragraph_boundaries(tokenizer: Any) -> None:
    para = "Short paragraph number {} about the dome."
    text = "\n\n".join(para.format(i) for i in range(4))
    size = 2 * n_tokens(tokenizer, para.format(0)) + 1
    chunks = chunk_document(Document("r", text), tokenizer, "recursive", size, 0)
    assert [c.text for c in chunks] == [f"{para.format(0)}\n\n{para.format(1)}", f"{para.format(2)}\n\n{para.format(3)}"]


def test_chunking_edge_cases(tokenizer: Any) -> None:
    assert chunk_document(Document("e", ""), tokenizer, "recursive", 16, 2) == []
    assert chunk_document(Document("e", "   \n\n "), tokenizer, "sentence", 16, 2) == []
    short = chunk_document(Document("s", "Just one line."), tokenizer, "recursive", 16, 4)
    assert [c.text for c in short] == ["Just one line."]
    # one sentence longer than the chunk: cut into token windows, nothing lost
    long_sentence = " ".join(f"word{i}" for i in range(60)) + "."
    parts = chunk_document(Document("l", long_sentence), tokenizer, "sentence", 16, 0)
    assert len(parts) > 1 and all(p.n_tokens <= 16 for p in parts)
    assert " ".join(p.text for p in parts).replace(" ", "") == long_sentence.replace(" ", "")
    unicode_doc = "Café Zürich — 東京 observatory. Ñandú sightings at 5 °C."
    u = chunk_document(Document("u", unicode_doc), tokenizer, "fixed", 8, 2)
    assert all(c.text in unicode_doc for c in u)
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_document(Document("x", "a b c"), tokenizer, "fixed", 8, 8)


# -- corpus ---------------------------------------------------------------------------------------

def write_corpus(root: Path, docs: dict[str, str] = DOCS) -> Path:
    folder = root / "docs"
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_corpus_forms(tmp_path: Path) -> None:
    write_corpus(tmp_path, {**DOCS, "sub/extra.txt": "Sub doc.", "ignored.pdf": "x", "empty.md": " "})
    assert [d.id for d in load_corpus("docs", tmp_path)] == ["dome.md", "leave.md", "library.md", "parking.md", "sub/extra.txt"]
    assert [d.id for d in load_corpus("docs/*.md", tmp_path)] == ["dome.md", "leave.md", "library.md", "parking.md"]
    (tmp_path / "c.jsonl").write_text('{"id": "b", "text": "B"}\n{"id": "a", "text": "A", "title": "T"}\n')
    assert [(d.id, d.title) for d in load_corpus("c.jsonl", tmp_path)] == [("a", "T"), ("b", None)]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.md").write_bytes(b"\xff\xfe bad")
    with pytest.raises(CorpusError, match=r"cannot read corpus file .*x\.md"):
        load_corpus("bad", tmp_path)
    (tmp_path / "none").mkdir()
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus("none", tmp_path)


# -- config, fingerprint, cache -------------------------------------------------------------------

def rag_config(root: Path, **rag: Any) -> Any:
    cfg = {"version": 1, "pipeline": "builtin:rag", "prompt": {"id": "p", "version": 1}, "eval": {"set": "e.jsonl"},
           "rag": {"corpus": "docs", "chunk_size": 24, "chunk_overlap": 4, "retriever_k": 2, **rag}}
    (root / "genai.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(root / "genai.yaml", environ={})


def fingerprint_of(root: Path, **rag: Any) -> str:
    from pytest_genai.rag.retrieval import build_retriever

    return build_retriever(rag_config(root, **rag))[0].index.fingerprint


def test_fingerprint_changes_exactly_with_retrieval_settings(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    base = fingerprint_of(tmp_path)
    # unrelated to the index: same fingerprint
    assert fingerprint_of(tmp_path, retriever_k=3) == base
    assert fingerprint_of(tmp_path, max_context_tokens=50) == base
    assert fingerprint_of(tmp_path, reranker="mmr") == base
    # each retrieval-relevant setting: a new one
    changed = {
        fingerprint_of(tmp_path, chunk_size=20),
        fingerprint_of(tmp_path, chunk_overlap=2),
        fingerprint_of(tmp_path, splitter="fixed"),
        fingerprint_of(tmp_path, index="hnsw"),
        fingerprint_of(tmp_path, index={"type": "hnsw", "m": 8}),
    }
    assert base not in changed and len(changed) == 5
    (tmp_path / "docs" / "dome.md").write_text(DOCS["dome.md"].replace("March", "April"))
    assert fingerprint_of(tmp_path) not in changed | {base}


def test_fingerprint_pin(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    from pytest_genai.rag.retrieval import build_retriever

    version = build_retriever(rag_config(tmp_path))[0].index.version
    assert build_retriever(rag_config(tmp_path, index_fingerprint=version))[0].index.version == version
    with pytest.raises(ConfigError, match=r"rag.index_fingerprint: the index would be idx-"):
        build_retriever(rag_config(tmp_path, index_fingerprint=version, chunk_size=20))


CHILD = """
import json, sys, hashlib
from pytest_genai.config import load_config
from pytest_genai.rag.retrieval import build_retriever
r, info = build_retriever(load_config(sys.argv[1], environ={}))
hits = r.retrieve("Who may start the dome motor?")
print(json.dumps({"cached": info.loaded_from_cache, "embed_s": info.seconds_embedding,
                  "chunks": [c.text for c in r.index.chunks],
                  "vectors": hashlib.sha256(r.index.vectors.tobytes()).hexdigest(),
                  "hits": [[h.chunk.id, round(h.score, 6)] for h in hits]}))
"""


@pytest.mark.slow  # real MiniLM embeddings in two fresh processes
def test_cache_is_reused_across_processes_with_identical_results(tmp_path: Path, isolated_cache: Path) -> None:
    write_corpus(tmp_path)
    rag_config(tmp_path)
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "genai.yaml")], capture_output=True, text=True,
                             env={**__import__("os").environ, "PYTEST_GENAI_CACHE_DIR": str(isolated_cache)})
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert not first["cached"] and first["embed_s"] > 0
    assert second["cached"] and second["embed_s"] == 0  # nothing embedded on the second run
    assert first["chunks"] == second["chunks"] and first["vectors"] == second["vectors"] and first["hits"] == second["hits"]
    assert first["hits"][0][0] == "dome.md#0"
    manifest = json.loads(next(isolated_cache.glob("indexes/*/manifest.json")).read_text())
    assert manifest["version"].startswith("idx-") and manifest["chunks"] == len(first["chunks"])


def test_invalid_rag_configs_name_their_key(tmp_path: Path) -> None:
    from pytest_genai.rag.retrieval import build_retriever

    write_corpus(tmp_path)
    with pytest.raises(ConfigError, match=r"genai.yaml:\d+: rag.chunk_overlap: must be smaller than rag.chunk_size \(24 >= 24\)"):
        rag_config(tmp_path, chunk_overlap=24)
    cases = [
        ({"embed_dim": 768}, "rag.embed_dim: is 768 but all-minilm-l6-v2 produces 384-dimensional vectors"),
        ({"retriever_k": 99}, "rag.retriever_k: is 99 but the corpus has only"),
        ({"corpus": "nowhere"}, "rag.corpus: the corpus .*nowhere does not exist"),
        ({"chunk_size": 400}, "rag.chunk_size: is 400 tokens but all-minilm-l6-v2 reads at most 254"),
        ({"embed_model": "no/such-model"}, "rag.embed_model: .*never downloaded"),
        ({"embed_model_sha256": "0" * 64}, "rag.embed_model_sha256: the model at .* has sha256 over every file of the folder"),
        ({"reranker": {"type": "cross_encoder", "path": "missing"}}, "rag.reranker.path: the cross-encoder folder"),
    ]
    for rag, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_retriever(rag_config(tmp_path, **rag))
    with pytest.raises(ConfigError, match="did you mean 'rag.retriever_k'"):
        rag_config(tmp_path, topK=3)


# -- retrieval ------------------------------------------------------------------------------------

def test_retrieval_finds_the_right_document_and_mmr_diversifies(tmp_path: Path) -> None:
    from pytest_genai.rag.retrieval import build_retriever

    write_corpus(tmp_path, {**DOCS, "leave2.md": DOCS["leave.md"].replace("Leave", "Holidays")})
    r, _ = build_retriever(rag_config(tmp_path, retriever_k=2))
    plain = [h.chunk.doc_id for h in r.retrieve("How many days of annual leave do staff get?")]
    assert set(plain) == {"leave.md", "leave2.md"}  # two near-duplicates fill the top 2
    r_mmr, _ = build_retriever(rag_config(tmp_path, retriever_k=2, reranker={"type": "mmr", "lambda": 0.3}))
    diverse = [h.chunk.doc_id for h in r_mmr.retrieve("How many days of annual leave do staff get?")]
    assert diverse[0] in {"leave.md", "leave2.md"} and diverse[1] not in {"leave.md", "leave2.md"}


def test_retrieval_metrics_hand_checked() -> None:
    retrieved = ["b.md", "b.md", "a.md", "c.md"]
    assert hit_at_k(retrieved, ["a.md"]) == 1.0 and hit_at_k(retrieved, ["z.md"]) == 0.0
    assert recall_at_k(retrieved, ["a.md", "z.md"]) == 0.5
    assert reciprocal_rank(retrieved, ["a.md"]) == 0.5  # b.md is rank 1 (two chunks count once), a.md rank 2
    assert reciprocal_rank(retrieved, ["c.md", "b.md"]) == 1.0
    assert reciprocal_rank(retrieved, ["z.md"]) == 0.0
    assert context_used("Room B4", ["Rare books are kept in Room B4."])
    assert context_used("The Room B4 basement", ["Rare books: room b4"])  # 2 of 3 tokens grounded
    assert not context_used("Paris France", ["Rare books are kept in Room B4."])
    assert not context_used("", ["anything"])


class EchoLLM:
    """A stand-in model (the LLM is not under test here): answers with the first line of the prompt."""

    model_sha256 = None

    def generate(self, messages: list[dict[str, str]], *, seed: int) -> Any:
        from pytest_genai.llm.base import Generation

        return Generation(messages[-1]["content"].splitlines()[0], 1, 1)


def test_retrieval_metrics_see_the_top_k_before_the_context_budget(tmp_path: Path) -> None:
    """Regression: a gold document ranked 2nd and cut by rag.max_context_tokens still counts as a hit."""
    from pytest_genai.pipelines.rag import RAGPipeline
    from pytest_genai.prompts import PromptTemplate
    from pytest_genai.rag.retrieval import build_retriever
    from pytest_genai.types import Case

    write_corpus(tmp_path)
    question = "How many days of annual leave do staff get?"
    retriever, info = build_retriever(rag_config(tmp_path, retriever_k=4))
    hits = retriever.retrieve(question)
    top_doc = hits[0].chunk.doc_id
    second = next(h for h in hits if h.chunk.doc_id != top_doc)  # the gold doc: ranked below the first chunk
    prompt = PromptTemplate("p", "1", "Context: {{ context }}\nQuestion: {{ question }}", tmp_path)
    # a budget of 1 token keeps only the first chunk (the first always goes in)
    pipeline = RAGPipeline(retriever, EchoLLM(), prompt, lambda case: 0, 1, info)  # type: ignore[arg-type]
    case = Case("c1", question, ("28 days",), gold_doc_ids=(second.chunk.doc_id,))
    answer = pipeline(case)

    retrieved = answer.metadata["retrieved"]
    assert [r["chunk_id"] for r in retrieved] == [h.chunk.id for h in hits] and len(retrieved) == 4
    assert [r["rank"] for r in retrieved] == [1, 2, 3, 4]
    assert [r["used"] for r in retrieved] == [True, False, False, False]
    assert answer.contexts == (hits[0].chunk.text,)  # the budget still decides what the prompt holds
    assert second.chunk.text not in answer.prompt
    docs = [r["doc_id"] for r in retrieved]
    assert hit_at_k(docs, case.gold_doc_ids) == 1.0 and recall_at_k(docs, case.gold_doc_ids) == 1.0
    assert reciprocal_rank(docs, case.gold_doc_ids) == 0.5
    # what went into the prompt alone would have missed it: the bug this guards against
    assert hit_at_k([r["doc_id"] for r in retrieved if r["used"]], case.gold_doc_ids) == 0.0
    # and the harness's own scoring, through the sanitizer, agrees
    from pytest_genai.sanitize import Sanitizer
    from pytest_genai.scoring import run_case

    result = run_case(pipeline, case, 0, pricing=(0.0, 0.0), repeat=1, seed_globals=False, pass_seed=True, guard=None,
                      sanitizer=Sanitizer.from_config(rag_config(tmp_path, retriever_k=4)))
    assert result.error is None and result.hit_at_k == 1.0 and result.recall_at_k == 1.0
