"""Corpus privacy: with `safety.redact` on, a RAG corpus whose text and file names carry e-mail addresses and card
numbers is sanitized as it is loaded, before chunking, embedding, the index fingerprint, the index cache, the run
folder, MLflow and the registered model's bundle; the served model retrieves the very chunks the eval did, and the
retrieval metrics still see gold document ids named by their raw (PII) file names. With `safety.redact: false`
the corpus is indexed as it is. Real MiniLM embeddings, real faiss, a real sqlite MLflow store, the OpenAI stub."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, registering
from pytest_genai.rag.corpus import CorpusError, Document, sanitized, sanitized_id
from pytest_genai.sanitize import Sanitizer
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-corpus-privacy-0a1b2c3d4e5f60718293"
REDACT_KEY = "corpus-privacy-hmac-key-7f3e9a"
NAME = "corpus-privacy-rag"
RAW = {  # every planted value, in the form it has in the corpus
    "text e-mail": "jane.doe@example.com",
    "text card": "4111 1111 1111 1111",
    "id e-mail": "max.mustermann@example.org",
    "id card": "5555555555554444",
    "file-name e-mail": "erika.musterfrau@example.net",
}
NEEDLES = [*RAW.values(), "4111111111111111", "4111-1111-1111-1111", KEY, REDACT_KEY]
NIGHT = "people/max.mustermann@example.org/night.md"
FUEL = "cards/5555555555554444.md"
TOURS = "erika.musterfrau@example.net.md"
DOCS = {
    "dome.md": "# Dome\n\nThe dome is serviced every March. Only Theo Brandt may start the dome motor.\n",
    "leave.md": "# Leave\n\nStaff get 28 days of annual leave. Requests go to the office before the first.\n",
    "billing.md": "Refunds go to jane.doe@example.com and the observatory card on file is 4111 1111 1111 1111, "
                  "charged for every refund.\n",
    NIGHT: "# Night shift\n\nThe telescope night shift is run by Max, who keeps the observing logbook.\n",
    FUEL: "# Fuel card\n\nThe spare fuel card for the observatory vans is kept in the safe.\n",
    TOURS: "# School tours\n\nGuided school tours on Fridays are led by Erika from the visitor centre.\n",
}
# Gold ids name the documents by their raw ids, PII included: they are mapped as the corpus ids are.
CASES = [
    {"id": "dome", "question": "Who may start the dome motor?", "answers": ["Theo Brandt"],
     "gold_doc_ids": ["dome.md"]},
    {"id": "refunds", "question": "Where do refunds go, and which card is on file?", "answers": ["Refunds go"],
     "gold_doc_ids": ["billing.md"]},
    {"id": "night", "question": "Who runs the telescope night shift and keeps the logbook?", "answers": ["Max"],
     "gold_doc_ids": [NIGHT]},
    {"id": "fuel", "question": "Where is the spare fuel card for the vans kept?", "answers": ["in the safe"],
     "gold_doc_ids": [FUEL]},
    # no gold id: the eval set itself would keep `erika...net.md` (the detectors skip an address followed by a file
    # suffix, see the report); the corpus side sets the suffix apart, which is what this case checks
    {"id": "tours", "question": "Who leads the guided school tours on Fridays?", "answers": ["Erika"]},
]


def keyed(redact: bool = True) -> Sanitizer:
    return Sanitizer(redact_pii=redact, key=REDACT_KEY.encode(), secrets=(REDACT_KEY,))


def write_docs(root: Path) -> None:
    for name, text in DOCS.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, "utf-8")


def raw_in(files: list[Path]) -> list[tuple[str, str]]:
    return [(needle, str(f)) for f in files for needle in NEEDLES if needle.encode() in f.read_bytes()]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


# -- document ids -------------------------------------------------------------------------------------------------

def test_document_ids_are_sanitized_as_gold_ids_are_mapped() -> None:
    san = keyed()
    night, fuel, tours = (sanitized_id(i, san) for i in (NIGHT, FUEL, TOURS))
    assert night.startswith("people/<EMAIL:") and night.endswith(">/night.md")
    assert fuel.startswith("cards/<CARD:") and fuel.endswith(">.md")
    assert tours.startswith("<EMAIL:") and tours.endswith(">.md")  # the suffix set apart: the address is found
    assert sanitized_id(night, san) == night and sanitized_id(tours, san) == tours  # idempotent: mapped ids stay
    assert sanitized_id("dome.md", san) == "dome.md" and sanitized_id("notes", san) == "notes"
    assert sanitized_id("jane.doe@example.com", san).startswith("<EMAIL:")  # a JSONL id
    assert sanitized_id(TOURS, keyed(False)) == TOURS  # safety.redact: false: ids as they are
    unkeyed = Sanitizer(redact_pii=True, key=None, secrets=())
    assert sanitized_id(NIGHT, unkeyed) != night  # the key decides the placeholder (and so the index)

    docs = [Document(NIGHT, DOCS[NIGHT]), Document("billing.md", DOCS["billing.md"], title="Card 4111 1111 1111 1111")]
    out = sanitized(docs, san)
    assert [d.id for d in out] == sorted(["billing.md", night])
    billing = next(d for d in out if d.id == "billing.md")
    assert "<EMAIL:" in billing.text and "<CARD:" in billing.text and billing.title.startswith("Card <CARD:")
    assert not [n for d in out for n in NEEDLES if n in d.id + d.text + (d.title or "")]
    assert sanitized(docs, keyed(False)) == docs
    twins = [Document("a/jane.doe@example.com.md", "x"), Document("a/Jane.Doe@example.com.md", "y")]
    with pytest.raises(CorpusError, match=r"two documents have the id 'a/<EMAIL:\w+>\.md' once sanitized"):
        sanitized(twins, san)


# -- the index --------------------------------------------------------------------------------------------------

def rag_config(root: Path, *, redact: bool) -> Any:
    import yaml

    from pytest_genai.config import load_config

    cfg = {"version": 1, "pipeline": "builtin:rag", "prompt": {"id": "p", "version": 1}, "eval": {"set": "e.jsonl"},
           "rag": {"corpus": "docs", "chunk_size": 48, "chunk_overlap": 8, "retriever_k": 2},
           "safety": {"redact": redact, "redact_key": "${GENAI_REDACT_KEY}"}}
    (root / "genai.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(root / "genai.yaml", environ={"GENAI_REDACT_KEY": REDACT_KEY})


class EchoLLM:
    """The LLM is not under test here: it answers with the first line of the prompt."""

    model_sha256 = None

    def generate(self, messages: list[dict[str, str]], *, seed: int) -> Any:
        from pytest_genai.llm.base import Generation

        return Generation(messages[-1]["content"].splitlines()[0], 1, 1)


def test_the_index_holds_sanitized_chunks_and_its_fingerprint_follows_redaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_genai.pipelines.rag import RAGPipeline
    from pytest_genai.prompts import PromptTemplate
    from pytest_genai.rag.retrieval import build_retriever
    from pytest_genai.scoring import run_case
    from pytest_genai.types import Case

    cache = tmp_path / "cache"
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    write_docs(tmp_path)
    plain, _ = build_retriever(rag_config(tmp_path, redact=False))  # as before: the corpus indexed as it is
    assert {c.doc_id for c in plain.index.chunks} == set(DOCS)
    assert any(RAW["text e-mail"] in c.text for c in plain.index.chunks)
    assert raw_in(files_under(plain.index.path))  # the raw index of redact: false is where it always was

    config = rag_config(tmp_path, redact=True)
    san = Sanitizer.from_config(config)
    redacted, info = build_retriever(config)  # its sanitizer from the config: the session passes the same one
    assert not info.loaded_from_cache  # not the raw index: the fingerprint changed with what is indexed
    assert redacted.index.fingerprint != plain.index.fingerprint and redacted.index.path != plain.index.path
    assert {c.doc_id for c in redacted.index.chunks} == {sanitized_id(i, san) for i in DOCS}
    assert not raw_in(files_under(redacted.index.path))  # chunks.jsonl, manifest.json (its corpus ids), vectors
    manifest = json.loads((redacted.index.path / "manifest.json").read_text())
    assert sorted(d for d, _ in manifest["inputs"]["corpus"]) == sorted(sanitized_id(i, san) for i in DOCS)
    assert build_retriever(config)[1].loaded_from_cache  # the sanitized index is cached and reused (same key)

    # the retrieval metrics: gold ids named raw, retrieved ids sanitized; scored through the harness's sanitizer
    prompt = PromptTemplate("p", "1", "Context: {{ context }}\nQuestion: {{ question }}", tmp_path)
    for retriever, sanitizer in ((redacted, san), (plain, Sanitizer.from_config(rag_config(tmp_path, redact=False)))):
        pipeline = RAGPipeline(retriever, EchoLLM(), prompt, lambda case: 0, 512, info)  # type: ignore[arg-type]
        for c in CASES[:4]:
            case = Case(c["id"], c["question"], tuple(c["answers"]), gold_doc_ids=tuple(c["gold_doc_ids"]))
            result = run_case(pipeline, case, 0, pricing=(0.0, 0.0), repeat=1, seed_globals=False, pass_seed=True,
                              guard=None, sanitizer=sanitizer)
            assert result.error is None and result.hit_at_k == 1.0 and result.recall_at_k == 1.0, (c["id"], result)
            assert result.reciprocal_rank == 1.0
            if sanitizer.redact_pii:
                assert not [n for n in NEEDLES if n in json.dumps(result.to_dict())]
                assert not [n for n in NEEDLES if n in pipeline(case).prompt]  # the LLM sees sanitized chunks
    # a custom pipeline that reports raw ids (here: answers of the raw index) is compared after the same mapping
    night = Case("night", CASES[2]["question"], ("Max",), gold_doc_ids=(NIGHT,))
    raw_answer = RAGPipeline(plain, EchoLLM(), prompt, lambda case: 0, 512, info)(night)  # type: ignore[arg-type]
    assert raw_answer.metadata["retrieved"][0]["doc_id"] == NIGHT
    result = run_case(lambda case: raw_answer, night, 0, pricing=(0.0, 0.0), repeat=1, seed_globals=False,
                      pass_seed=False, guard=None, sanitizer=san)
    assert result.hit_at_k == 1.0 and result.retrieved[0]["doc_id"] == sanitized_id(NIGHT, san)


# -- the eval, the run folder, MLflow, the registered model --------------------------------------------------------

@pytest.fixture
def rag_project(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GENAI_REDACT_KEY", REDACT_KEY)
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(tmp_path / "genai-cache"))
    monkeypatch.setenv("GENAI_MONITOR_SINK", "off")
    project.use_stub(stub.base_url, CASES)
    write_docs(project.path)
    project.config.update({
        "pipeline": "builtin:rag",
        "rag": {"corpus": "docs", "chunk_size": 48, "chunk_overlap": 8, "retriever_k": 2},
        "safety": {"redact": True, "redact_key": "${GENAI_REDACT_KEY}"},
        "gates": {"hit_at_k": ">= 1.0", "recall_at_k": ">= 1.0"},
    })
    project.write_config()
    return project


def persisted(project: Project, cache: Path) -> list[Path]:
    """Everything the sessions wrote: run folders, the MLflow db and artifact folder (the registered model's bundle
    among them), the index cache. The inputs (corpus, eval set, config, prompt) are left out."""
    inputs = {project.path / "evals" / "qa.jsonl", project.path / "genai.yaml"}
    mine = [p for p in files_under(project.path) if p not in inputs and p.suffix not in (".py", ".pyc")
            and not {"docs", "prompts"} & set(p.relative_to(project.path).parts)]
    return mine + files_under(cache) + [Path(project.mlflow_uri[len("sqlite:///"):])]


@pytest.mark.slow  # MiniLM in the session and in the registration's fresh-process check
def test_a_redacted_rag_eval_persists_no_raw_corpus_value_and_serves_what_it_evaluated(
        rag_project: Project, stub: OpenAIStub, tmp_path: Path) -> None:
    from pytest_genai.release.served import ServedPipeline

    rel = registering(rag_project, NAME)
    # sessions in their own process: pytester forgets what an in-process session imported, and torch cannot be
    # imported twice in one process (the served model is loaded in this one, below)
    result = rel.run("--genai-config", "genai.yaml", "--genai-register", subprocess=True)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out
    result.stdout.fnmatch_lines(["mlflow: 5 case traces*", f"registered: {NAME} version 1, alias staging -> 1 *"])
    summary = rel.summary()
    m = summary["metrics"]
    assert m["hit_at_k"] == 1.0 and m["recall_at_k"] == 1.0 and m["mrr"] == 1.0  # gold ids named raw still match
    logged = {r["id"]: r for r in rel.last_results()}
    san = keyed()
    assert logged["night"]["retrieved"][0]["doc_id"] == sanitized_id(NIGHT, san)
    assert logged["fuel"]["retrieved"][0]["doc_id"] == sanitized_id(FUEL, san)
    assert logged["tours"]["retrieved"][0]["doc_id"] == sanitized_id(TOURS, san)
    assert summary["tags"]["index.cache"] == "built"

    cache = tmp_path / "genai-cache"
    files = persisted(rel, cache)
    names = {p.name for p in files}
    assert {"results.jsonl", "run.json", "manifest.json", "chunks.jsonl", "bundle.json", "mlflow.db"} <= names
    assert any(p.name == "chunks.jsonl" and "bundle" in p.parts for p in files)  # the registered model's own copy
    assert not [n for n in NEEDLES if n in out]
    assert not raw_in(files)
    bodies = json.dumps(stub.requests)
    assert stub.requests and not [n for n in NEEDLES if n in bodies]  # the LLM was only ever sent sanitized chunks

    # the served model: the bundle's chunks are the eval's, and it retrieves the logged documents
    bundle = next(p.parent for p in files if p.name == "bundle.json" and "artifacts" in p.parts)
    served = ServedPipeline.load(bundle)
    index_chunks = served.pipeline.retriever.index.chunks
    cached = next(cache.glob(f"indexes/{summary['tags']['index.fingerprint']}/chunks.jsonl")).read_text().splitlines()
    assert [c.text for c in index_chunks] == [json.loads(line)["text"] for line in cached]
    rows = served.predict([{"id": c["id"], "question": c["question"]} for c in CASES])
    for case, row in zip(CASES, rows):
        assert row["retrieved_doc_ids"] == [r["doc_id"] for r in logged[case["id"]]["retrieved"]], case["id"]
        assert row["answer"] == logged[case["id"]]["answer"]
    assert not [n for n in NEEDLES if n in json.dumps(rows)]


@pytest.mark.slow  # MiniLM in two sessions
def test_redact_false_indexes_the_corpus_as_it_is(rag_project: Project, tmp_path: Path) -> None:
    rag_project.config["safety"] = {"redact": False}
    rag_project.write_config()
    result = rag_project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 0, result.stdout.str()
    summary = rag_project.summary()
    assert summary["metrics"]["hit_at_k"] == 1.0 and summary["tags"]["safety.redact"] == "false"
    logged = {r["id"]: r for r in rag_project.last_results()}
    assert logged["night"]["retrieved"][0]["doc_id"] == NIGHT and logged["tours"]["retrieved"][0]["doc_id"] == TOURS
    chunks = (tmp_path / "genai-cache" / "indexes" / summary["tags"]["index.fingerprint"] / "chunks.jsonl").read_text()
    assert RAW["text e-mail"] in chunks and RAW["text card"] in chunks
    plain_fp = summary["tags"]["index.fingerprint"]

    rag_project.config["safety"] = {"redact": True}  # unkeyed this time: still never the raw index
    rag_project.write_config()
    again = rag_project.run("--genai-config", "genai.yaml", subprocess=True)
    assert again.ret == 0, again.stdout.str()
    redacted = rag_project.summary()
    assert redacted["tags"]["index.cache"] == "built" and redacted["tags"]["index.fingerprint"] != plain_fp
    assert redacted["metrics"]["hit_at_k"] == 1.0
    assert not raw_in(files_under(rag_project.run_dirs()[-1]))
    assert not raw_in(files_under(tmp_path / "genai-cache" / "indexes" / redacted["tags"]["index.fingerprint"]))


def test_sanitized_keeps_documents_without_pii_as_they_are() -> None:
    docs = [Document("dome.md", DOCS["dome.md"]), Document("leave.md", DOCS["leave.md"], title="Leave")]
    assert sanitized(docs, keyed()) == docs  # a corpus without PII: the same index (and fingerprint) either way
    assert sanitized([replace(docs[0], id="z.md"), docs[1]], keyed())[0].id == "leave.md"  # sorted by id


def test_with_redact_false_a_secret_in_the_corpus_is_masked_all_the_same() -> None:
    """safety.redact: false keeps PII (a private store may), never a key: an API key written in a document, its
    title or its id does not reach the index (nor its cache, nor a packaged model); the rest stays as it is."""
    api_key = "sk-proj-abcdefghij0123456789abcd"
    docs = [Document("ops.md", f"The deploy key is {api_key}; mail jane.doe@example.com.", title=f"key {api_key}"),
            Document(f"keys/{api_key}.md", "A note."), Document("dome.md", DOCS["dome.md"]),
            Document("env.md", f"GENAI_REDACT_KEY={REDACT_KEY}")]
    out = sanitized(docs, keyed(False))
    assert [d.id for d in out][2:] == ["dome.md", "env.md"] and out[2] == docs[2]  # its order, the rest unchanged
    assert not [d for d in out if api_key in d.id + d.text + (d.title or "") or REDACT_KEY in d.text]
    assert "jane.doe@example.com" in out[0].text  # PII stays with redact off
    assert out[1].id == sanitized_id(f"keys/{api_key}.md", keyed(False)) != f"keys/{api_key}.md"  # gold ids alike
