"""Targets for API-model evals, against the OpenAI-compatible stub on 127.0.0.1 (tracking off, so the
eval itself is measured; the local results folder is still written):

1. 200 cases, stub at 100 ms a call, `--genai-concurrency 16`: wall time within 1.25x of the ideal
   200 x 0.1 s / 16 = 1.25 s, plus fixed start-up. Start-up is measured as the same command on a
   1-case eval set against a 0 ms stub (pytest, plugin, config, pipeline build, session end); the
   same 200 cases against the 0 ms stub are timed too, for the per-case cost without latency.
2. Replaying 2,000 cached cases (`--genai-cache record` once against a 0 ms stub, then
   `--genai-cache replay` with the stub stopped): (replay wall - start-up) / 2000 < 2 ms, start-up
   being the same replay command on a 1-case set.
3. The same eval with promptfoo (`npx promptfoo eval -j 16 --no-cache`, pinned in
   benchmarks/promptfoo/package.json; `npm ci --prefix benchmarks/promptfoo` installs it): same
   cases, same prompt (one user message), same stubs, same latency, a `contains` assertion per case,
   interleaved with the pytest-genai runs. Skipped with a message when promptfoo cannot run.

Wave 3 targets (issue "the house", item 7), from the same runs: start-up (the 1-case command) <= 0.4 s; the
eval part (total - start-up) <= 1.15x the ideal; end to end >= 3x faster than promptfoo in the same run.

Every timed run is checked: exit code 0 (every case passed its `contains` check) and exactly one
stub request per case (no cache on either side).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from _util import PY, REPO, median, record, time_command

sys.path.insert(0, str(REPO))
from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour  # noqa: E402

N = 200
N_REPLAY = 2000
CONCURRENCY = 16
LATENCY_MS = 100.0
ROUNDS = 5
REPLAY_ROUNDS = 5
KEY = "sk-bench-providers-0123456789"
MODEL = "stub-model"
TEMPLATE = "Context: {{ context }}\nQuestion: {{ question }}"
PROMPTFOO_DIR = REPO / "benchmarks" / "promptfoo"
PROMPTFOO_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_CACHE_ENABLED": "false",
    "PROMPTFOO_DISABLE_SHARING": "1",
    "NO_COLOR": "1",
}
PYTEST = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]


def cases(n: int) -> list[dict[str, Any]]:
    # The stub answers with the first 1-3 words of the Context: line, so "answer<i>" is always in it.
    return [{"id": f"c{i:04d}", "question": f"What is the answer to question {i}?", "answers": [f"answer{i}"],
             "context": f"answer{i} is the answer to question {i}", "expect": {"contains": f"answer{i}"}}
            for i in range(n)]


def write_eval_set(path: Path, n: int) -> None:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases(n)))


def write_genai_config(path: Path, eval_set: str, base_url: str) -> None:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "seed": 1234,
        "pipeline": "builtin:llm",
        "prompt": {"id": "qa", "version": 1},
        "llm": {"provider": "openai_compatible", "base_url": base_url, "api_key": "${OPENAI_API_KEY}",
                "model_id": MODEL, "temperature": 0.0, "max_tokens": 16},
        "eval": {"set": eval_set},
        "gates": {"error_rate": "== 0"},
        "tracking": {"enabled": False, "results_dir": "runs"},
        "env": {"lock_file": "none.lock"},
    }, sort_keys=False))


def write_promptfoo_config(path: Path, n: int, base_url: str) -> None:
    """The same cases and prompt: promptfoo sends a non-JSON prompt to openai:chat as one user message."""
    path.write_text(yaml.safe_dump({
        "description": f"pytest-genai bench_providers: {n} cases",
        "prompts": [TEMPLATE.replace("{{ context }}", "{{context}}").replace("{{ question }}", "{{question}}")],
        "providers": [{"id": f"openai:chat:{MODEL}",
                       "config": {"apiBaseUrl": base_url, "apiKeyEnvar": "OPENAI_API_KEY", "temperature": 0, "max_tokens": 16}}],
        "tests": [{"description": c["id"], "vars": {"question": c["question"], "context": c["context"]},
                   "assert": [{"type": "contains", "value": c["answers"][0]}]} for c in cases(n)],
    }, sort_keys=False))


def promptfoo_command(config: Path, out: Path) -> list[str]:
    return ["npx", "--no-install", "promptfoo", "eval", "-c", str(config), "-j", str(CONCURRENCY), "--no-cache",
            "--no-write", "--no-table", "--no-progress-bar", "--no-share", "-o", str(out)]


def promptfoo_problem(env: dict[str, str]) -> tuple[str | None, str | None]:
    """(version, None) when promptfoo runs here, else (None, why not)."""
    if shutil.which("npx") is None:
        return None, "npx not found on PATH (promptfoo needs Node.js and npm)"
    if not (PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo").exists():
        return None, f"promptfoo is not installed: run `npm ci --prefix {PROMPTFOO_DIR}`"
    try:
        proc = subprocess.run(["npx", "--no-install", "promptfoo", "--version"], cwd=PROMPTFOO_DIR, capture_output=True,
                              text=True, timeout=120, env={**os.environ, **env})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`npx promptfoo --version` failed: {exc}"
    version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not version[:1].isdigit():
        return None, f"`npx promptfoo --version` exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-1500:]}"
    return version, None


def check_promptfoo_output(out: Path, n: int) -> None:
    stats = json.loads(out.read_text())["results"]["stats"]
    if stats.get("successes") != n or stats.get("failures") or stats.get("errors"):
        raise RuntimeError(f"promptfoo: expected {n} passing cases, got {stats}")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], stub: OpenAIStub | None, expected_requests: int,
          check: Callable[[], None] | None = None) -> float:
    if stub is not None:
        stub.reset_counters()
    elapsed = time_command(cmd, cwd, env)
    if stub is not None and stub.request_count != expected_requests:
        raise RuntimeError(f"{' '.join(cmd)}: {stub.request_count} stub requests, expected {expected_requests}")
    if check is not None:
        check()
    return elapsed


def bench_concurrency(d: Path, env: dict[str, str]) -> dict[str, Any]:
    """Targets 1 and 3, interleaved round by round: each variant sees the same machine noise."""
    write_eval_set(d / "evals200.jsonl", N)
    write_eval_set(d / "evals1.jsonl", 1)
    (d / "prompts").mkdir()
    (d / "prompts" / "qa.yaml").write_text(yaml.safe_dump({"id": "qa", "version": 1, "template": TEMPLATE}, sort_keys=False))
    pf_env = {**env, **PROMPTFOO_ENV, "PROMPTFOO_CONFIG_DIR": str(d / "promptfoo-home")}
    pf_version, pf_skip = promptfoo_problem(pf_env)
    if pf_skip:
        print(f"bench_providers: skipping promptfoo: {pf_skip}", file=sys.stderr)
    with OpenAIStub(StubBehaviour(latency_ms=LATENCY_MS, api_key=KEY)) as slow, OpenAIStub(StubBehaviour(latency_ms=0, api_key=KEY)) as fast:
        write_genai_config(d / "slow200.yaml", "evals200.jsonl", slow.base_url)
        write_genai_config(d / "fast200.yaml", "evals200.jsonl", fast.base_url)
        write_genai_config(d / "fast1.yaml", "evals1.jsonl", fast.base_url)
        conc = ["--genai-concurrency", str(CONCURRENCY)]
        variants: dict[str, tuple[list[str], OpenAIStub, int, Callable[[], None] | None]] = {
            "genai_100ms_200": (PYTEST + ["--genai-config", "slow200.yaml", *conc, "evals200.jsonl"], slow, N, None),
            "genai_0ms_1": (PYTEST + ["--genai-config", "fast1.yaml", *conc, "evals1.jsonl"], fast, 1, None),
            "genai_0ms_200": (PYTEST + ["--genai-config", "fast200.yaml", *conc, "evals200.jsonl"], fast, N, None),
        }
        if pf_version:
            for name, n, stub in (("promptfoo_100ms_200", N, slow), ("promptfoo_0ms_1", 1, fast), ("promptfoo_0ms_200", N, fast)):
                cfg, out = d / f"{name}.promptfooconfig.yaml", d / f"{name}.out.json"
                write_promptfoo_config(cfg, n, stub.base_url)
                variants[name] = (promptfoo_command(cfg, out), stub, n,
                                  lambda out=out, n=n: check_promptfoo_output(out, n))  # type: ignore[misc]
        # One untimed pass of everything: warms the page cache, npx's resolution and promptfoo's config dir.
        pf_error = None
        for name, (cmd, stub, n, check) in list(variants.items()):
            cwd = PROMPTFOO_DIR if name.startswith("promptfoo") else d
            try:
                timed(cmd, cwd, pf_env if name.startswith("promptfoo") else env, stub, n, check)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                if not name.startswith("promptfoo"):
                    raise
                text = str(exc)
                pf_error = f"{name}: {text if len(text) < 1600 else text[:400] + ' [...] ' + text[-1200:]}"
        if pf_error:
            print(f"bench_providers: skipping promptfoo, its warm-up run failed: {pf_error}", file=sys.stderr)
            variants = {k: v for k, v in variants.items() if not k.startswith("promptfoo")}
            pf_skip, pf_version = pf_error, None
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(ROUNDS):
            for name, (cmd, stub, n, check) in variants.items():
                pf = name.startswith("promptfoo")
                times[name].append(timed(cmd, PROMPTFOO_DIR if pf else d, pf_env if pf else env, stub, n, check))
    med = {k: median(v) for k, v in times.items()}
    ideal = N * LATENCY_MS / 1000 / CONCURRENCY
    result: dict[str, Any] = {
        "cases": N, "latency_ms": LATENCY_MS, "concurrency": CONCURRENCY, "ideal_s": ideal, "rounds": ROUNDS,
        **_summary("genai", med, ideal),
        "times_s": times,
    }
    if pf_version:
        result.update({"promptfoo_version": pf_version, **_summary("promptfoo", med, ideal)})
    else:
        result["promptfoo_skipped"] = pf_skip
    return result


def bench_replay(d: Path, env: dict[str, str]) -> dict[str, Any]:
    """Target 2: record 2,000 cases once against a 0 ms stub, stop it, replay (and replay 1 case: start-up)."""
    write_eval_set(d / "evals2000.jsonl", N_REPLAY)
    write_eval_set(d / "evals1.jsonl", 1)  # case c0000, recorded with the 2,000
    (d / "prompts").mkdir()
    (d / "prompts" / "qa.yaml").write_text(yaml.safe_dump({"id": "qa", "version": 1, "template": TEMPLATE}, sort_keys=False))
    with OpenAIStub(StubBehaviour(latency_ms=0, api_key=KEY)) as stub:
        write_genai_config(d / "genai2000.yaml", "evals2000.jsonl", stub.base_url)
        write_genai_config(d / "genai1.yaml", "evals1.jsonl", stub.base_url)
        record_s = timed(PYTEST + ["--genai-config", "genai2000.yaml", "--genai-cache", "record", "evals2000.jsonl"],
                         d, env, stub, N_REPLAY)
    # The stub is down and the key gone: every answer must come from the cache.
    replay_env = {**env, "OPENAI_API_KEY": ""}
    variants = {
        "replay_2000": PYTEST + ["--genai-config", "genai2000.yaml", "--genai-cache", "replay", "evals2000.jsonl"],
        "replay_1": PYTEST + ["--genai-config", "genai1.yaml", "--genai-cache", "replay", "evals1.jsonl"],
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(REPLAY_ROUNDS):
        for name, cmd in variants.items():
            times[name].append(time_command(cmd, d, replay_env))
    total, startup = median(times["replay_2000"]), median(times["replay_1"])
    return {"cases": N_REPLAY, "record_s": record_s, "replay_total_s": total, "replay_startup_s": startup,
            "replay_per_case_ms": (total - startup) / N_REPLAY * 1000, "rounds": REPLAY_ROUNDS, "times_s": times}


def _summary(tool: str, med: dict[str, float], ideal: float) -> dict[str, float]:
    """One tool's numbers from the medians: total, start-up (1 case at 0 ms), and the eval in between."""
    total, startup, zero = med[f"{tool}_100ms_200"], med[f"{tool}_0ms_1"], med[f"{tool}_0ms_200"]
    return {
        f"{tool}_total_s": total,
        f"{tool}_startup_s": startup,
        f"{tool}_zero_latency_200_s": zero,
        f"{tool}_eval_s": total - startup,
        f"{tool}_ratio_to_ideal": (total - startup) / ideal,
        # Lenient view: the 200 zero-latency cases as "start-up" also subtract the per-case cost.
        f"{tool}_total_minus_zero_latency_200_s": total - zero,
    }


def main() -> dict[str, Any]:
    env = {"OPENAI_API_KEY": KEY}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "conc").mkdir()
        (Path(tmp) / "replay").mkdir()
        concurrency = bench_concurrency(Path(tmp) / "conc", env)
        replay = bench_replay(Path(tmp) / "replay", env)
    return {"concurrency": concurrency, "replay": replay}


if __name__ == "__main__":
    json.dump(record("providers", main()), sys.stdout, indent=2)
    print()
