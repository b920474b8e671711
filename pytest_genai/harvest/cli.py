"""`pytest-genai harvest --config genai.yaml --out eval_sets/NEW.jsonl`: served traffic -> a new eval-set file.

Where the records come from: `--records PATH` (a local sink's JSONL), else the config's monitor sink: the local
file (GENAI_MONITOR_PATH, else monitor.path, relative to the current folder, as `monitor` reads it), or with
`--model NAME [--alias production]` the MLflow traces of the version behind that alias. What is written: see
harvest/sample.py. An existing `--out` is never overwritten. Exit 0: written; 2: bad input (one line)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pytest_genai.config import ConfigError, load_config
from pytest_genai.evalset import EvalSetError, load_eval_set
from pytest_genai.harvest import near
from pytest_genai.harvest.sample import STRATA, Harvest, HarvestError, harvest, redacting
from pytest_genai.monitor.cli import model_id_of
from pytest_genai.monitor.record import DEFAULT_SINK, SinkError, local_path, read_local, read_traces
from pytest_genai.rag.embedding import EmbeddingError, resolve_embedder
from pytest_genai.release.ops import client_for, version_of
from pytest_genai.release.register import RegistryError
from pytest_genai.sanitize import Sanitizer
from pytest_genai.tracking.mlflow_client import quiet, resolve_uri, use_tracking_uri


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("harvest", help="sample served traffic (the monitor's request records) into a new "
                                              "eval-set file: sanitized, deduplicated, stratified, with provenance")
    p.add_argument("--config", default="genai.yaml", help="the config (monitor sink, safety, seed, rag.embed_model)")
    p.add_argument("--out", required=True, metavar="PATH", help="the new eval-set file (.jsonl); never overwritten")
    src = p.add_argument_group("records (default: the config's local sink file)")
    src.add_argument("--records", default=None, metavar="PATH", help="a local sink's JSONL of request records")
    src.add_argument("--model", default=None, metavar="NAME", help="the mlflow sink: the traces of this registered model's version")
    src.add_argument("--alias", default="production", help="with --model: the alias whose version (default production)")
    src.add_argument("--tracking-uri", default=None, help="with --model (default: MLFLOW_TRACKING_URI, then tracking.uri)")
    p.add_argument("--size", type=int, default=100, help="cases in the new set at most (default 100)")
    p.add_argument("--seed", type=int, default=None, help="the sampling seed (default: the config's seed)")
    p.add_argument("--min-share", type=float, default=0.2,
                   help="share of the set reserved for each of errors, safety-flagged and slow requests (default 0.2)")
    p.add_argument("--near-dup", choices=("auto", "on", "off"), default="auto",
                   help="near-duplicate questions by embedding: auto (when the [rag] extra and the embedder are installed)")
    p.add_argument("--near-threshold", type=float, default=near.DEFAULT_THRESHOLD,
                   help=f"cosine at or above which two questions are one (default {near.DEFAULT_THRESHOLD})")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    try:
        lines = build(args)
    except (HarvestError, ConfigError, SinkError, RegistryError, EvalSetError, EmbeddingError, ValueError,
            OSError) as exc:
        print(f"pytest-genai harvest: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        echo(line)
    return 0


def build(args: argparse.Namespace) -> list[str]:
    started = time.perf_counter()
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise HarvestError(f"--out {out} is a folder: give the new eval set's file name (eval_sets/NEW.jsonl)")
    if out.exists():
        raise HarvestError(f"--out {out} exists: harvest never overwrites an eval set (the guard would see a silent "
                           "change); choose a new file name")
    if out.suffix != ".jsonl":
        raise HarvestError(f"--out {out}: an eval set is a .jsonl file")
    config = load_config(Path(args.config))
    records, where = _records(args, config)
    sanitizer = redacting(Sanitizer.from_config(config))
    dedup, how = _near(args, config)
    seed = int(config.get("seed", 0)) if args.seed is None else args.seed
    result = harvest(records, args.size, seed=seed, sanitizer=sanitizer, min_share=args.min_share, admit=dedup)
    if not result.cases:
        raise HarvestError(f"no request record with a question in {where} ({result.records} record(s)): nothing to "
                           "harvest")
    _write_new(out, result)
    written = load_eval_set(out)  # what the eval will read, and its snapshot hash
    return _summary(result, where, out, written.sha256, how, time.perf_counter() - started, sanitizer.keyed)


def _records(args: argparse.Namespace, config: Any) -> tuple[list[dict[str, Any]], str]:
    section = config.get("monitor") or {}
    if args.records and args.model:
        raise HarvestError("--records reads a local file and --model the traces of a served version: give one")
    if args.records:
        path = Path(args.records).expanduser().resolve()
        return read_local(path), str(path)
    if args.model:
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or resolve_uri(config.get("tracking.uri"),
                                                                                         config.base_dir)
        with quiet():
            client = client_for(uri)
            version = version_of(client, args.model, args.alias)
            model_id = model_id_of(version)
            run_id = (version.tags or {}).get("genai.eval_run_id")
            experiment = str(client.get_run(run_id).info.experiment_id) if run_id else None
        if not model_id or not experiment:
            raise HarvestError(f"{args.model}@{args.alias} (v{version.version}) has no LoggedModel id or eval run: "
                               "its traces cannot be found")
        try:
            with use_tracking_uri(uri), quiet():
                return read_traces([experiment], model_id), f"the traces of {args.model} v{version.version}"
        except Exception as exc:  # noqa: BLE001 - the tracking store: one clear line
            raise SinkError(f"cannot read traces of {model_id}: {type(exc).__name__}: {exc}") from None
    sink = section.get("sink") or DEFAULT_SINK
    if sink != "local":
        raise HarvestError(f"monitor.sink is {sink}: give --model NAME (the traces of a served version) or "
                           "--records PATH (a local sink file)")
    path = local_path(section.get("path"), Path.cwd())
    return read_local(path), str(path)


def _near(args: argparse.Namespace, config: Any) -> tuple[Any, str]:
    if args.near_dup == "off":
        return None, "near-duplicates not checked (--near-dup off)"
    model_id = str(config.get("rag.embed_model") or "all-minilm-l6-v2")
    why = None
    if not near.available():
        why = "the [rag] extra is not installed"
    else:
        try:
            resolve_embedder(model_id, config.base_dir)
        except EmbeddingError as exc:
            why = str(exc)
    if why is not None:
        if args.near_dup == "on":
            raise HarvestError(f"--near-dup on: {why}")
        return None, f"near-duplicates not checked ({why.splitlines()[0]})"
    if not 0.0 < args.near_threshold <= 1.0:
        raise HarvestError(f"--near-threshold must be in (0, 1], got {args.near_threshold}")
    return (near.embedding_filter(model_id, config.base_dir, sha256=config.get("rag.embed_model_sha256"),
                                  threshold=args.near_threshold),
            f"near-duplicates by {model_id} embeddings at cosine >= {args.near_threshold:g}")


def _write_new(out: Path, result: Harvest) -> None:
    """Exclusive create: a file that appeared meanwhile is not overwritten either."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(c, ensure_ascii=False, sort_keys=False) + "\n" for c in result.cases)
    try:
        with open(out, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise HarvestError(f"--out {out} exists: harvest never overwrites an eval set") from None


def _summary(result: Harvest, where: str, out: Path, sha: str, how: str, seconds: float, keyed: bool) -> list[str]:
    by = ", ".join(f"{s} {result.chosen_by_stratum[s]} of {result.by_stratum[s]}" for s in STRATA)
    review = sum("review" in c["tags"] for c in result.cases)
    lines = [f"harvest: {result.records} record(s) from {where}, {result.usable} with a question, {result.distinct} "
             f"distinct", f"wrote {len(result.cases)} case(s) to {out} ({by}); {how}"
             + (f": {result.near_duplicates} passed over" if result.near_duplicates else ""),
             f"eval_set.hash {sha}: a new eval set (its own snapshot hash)",
             f"review: {review} case(s) carry the served answer as their answer (tag review); "
             f"{len(result.cases) - review} need an expected answer (tag needs_expected, answers [])",
             f"sanitized by harvest (PII redacted whatever safety.redact says); {seconds:.2f} s"]
    if review < len(result.cases):
        lines.append(f"note: until a person fills them, the {len(result.cases) - review} needs_expected case(s) have no "
                     "gold answer and score 0 (run the rest with -m 'not needs_expected')")
    if not keyed:
        lines.append("WARNING: the placeholders are UNKEYED (no safety.redact_key): a card, phone or ID number, or a "
                     "short password, can be recovered from its placeholder by trying every value. Set safety.redact_key:"
                     " ${ENV} before committing this file")
    return lines + list(result.notes)
