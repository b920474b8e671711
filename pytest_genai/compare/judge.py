"""The preference judges behind `pref_win_rate`: per paired case, is the candidate's answer preferred over the
baseline's (1), the baseline's (0), or neither (0.5)?

`F1Judge` (the default, `compare.judge: f1`) is `pref_win_rate_f1`: free and deterministic. `LLMJudge`
(`compare.judge: {llm, prompt}`) asks its own pinned model with a versioned, hashed prompt, each pair in both
orders (candidate as A, then as B) so a position bias cancels: both orders prefer the candidate -> 1, both the
baseline -> 0, anything else (a disagreement, a tie, a reply that is not A/B/tie) -> 0.5. Its calls go through
the session's response cache, so `--genai-cache replay` reproduces the verdicts with no network. It sees the
answers as the run persisted them (sanitized): the cache keys of a replay are the recording's, and no raw PII
goes to a judge API. A pair where either side has no answer (the case errored) is scored by the F1 judge, as
pref_win_rate_f1 scores it. Light at import: the judge's provider is built only when it judges."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from pytest_genai import names
from pytest_genai.compare.pairing import Pairing, f1_preference, pref_win_rate_f1
from pytest_genai.config.model import GenaiConfig
from pytest_genai.config.schema import schema
from pytest_genai.config.validate import apply_defaults
from pytest_genai.context import provider_class
from pytest_genai.llm.cache import case_label
from pytest_genai.prompts import PromptError, load_prompt, read_lock, unbumped_edit_message
from pytest_genai.registries import PROVIDERS
from pytest_genai.runtime import make_llm
from pytest_genai.sanitize import Sanitizer
from pytest_genai.seeding import case_seed
from pytest_genai.types import CaseResult

JUDGE_KEY = "compare.judge"
F1 = "f1"
VARIABLES = frozenset({"question", "gold", "answer_a", "answer_b"})  # what a judge prompt may read
REQUIRED_VARIABLES = frozenset({"answer_a", "answer_b"})
VERDICTS = ("A", "B", "tie")
RAW_LIMIT = 200  # characters of a judge reply kept in comparison.json
# Tags of a compared run: which judge decided pref_win_rate (config_hash leaves `compare` out: docs/guides/comparing.md)
TAG_PREF_JUDGE = names.TAG_PREF_JUDGE
TAG_PREF_JUDGE_PROMPT_HASH = names.TAG_PREF_JUDGE_PROMPT_HASH
TAG_PREF_JUDGE_CACHE_HITS = names.TAG_PREF_JUDGE_CACHE_HITS
TAG_PREF_JUDGE_CACHE_MISSES = names.TAG_PREF_JUDGE_CACHE_MISSES

Pair = tuple[CaseResult, CaseResult]  # (candidate, baseline)


class JudgeError(Exception):
    """The judge could not score the pairs (its model failed, a replay miss, a prompt that does not render)."""


@dataclass(frozen=True)
class Verdicts:
    """A judge's scores, one per pair in pairing order, each 1, 0.5 or 0; `details` go into comparison.json's
    pref_win_rate block, `tags` onto the run."""

    judge: str
    wins: tuple[float, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return sum(self.wins) / len(self.wins) if self.wins else math.nan


class Judge(Protocol):
    @property
    def name(self) -> str: ...  # pref_judge: "f1" or "llm:<model_id>"

    def judge(self, pairs: Sequence[Pair]) -> Verdicts: ...


class F1Judge:
    """The default judge: the higher F1 against gold wins, a tie counts half (`pref_win_rate_f1`)."""

    name = F1

    def judge(self, pairs: Sequence[Pair]) -> Verdicts:
        _, wins = pref_win_rate_f1(Pairing(tuple(pairs)))
        return Verdicts(F1, wins, tags={TAG_PREF_JUDGE: F1})


# -- verdicts ------------------------------------------------------------------------------------------
_TRIM = "*\"'`.,:;!()[]"


def parse_verdict(text: str | None) -> str | None:
    """"A", "B" or "tie" from the reply's first token (surrounding `*"'.,:;!()[]` and backticks ignored; A and B
    upper case only, since "a" opens English sentences; "tie" in any case); None for anything else."""
    tokens = (text or "").split()
    token = tokens[0].strip(_TRIM) if tokens else ""
    if token in ("A", "B"):
        return token
    return "tie" if token.lower() == "tie" else None


def preference(verdict: str | None, candidate_as: str) -> int:
    """+1 the candidate is preferred, -1 the baseline, 0 neither; the candidate was shown as `candidate_as`."""
    if verdict not in ("A", "B"):
        return 0
    return 1 if verdict == candidate_as else -1


def combine(verdict_ab: str | None, verdict_ba: str | None) -> float:
    """The case's score from its two verdicts (candidate as A, then candidate as B): 1 when both orders prefer
    the candidate, 0 when both prefer the baseline, else 0.5 (a position bias cancels into a tie)."""
    first, second = preference(verdict_ab, "A"), preference(verdict_ba, "B")
    if first > 0 and second > 0:
        return 1.0
    if first < 0 and second < 0:
        return 0.0
    return 0.5


# -- the judge's configuration -----------------------------------------------------------------------
class JudgeLLMConfig:
    """The session's config as the judge's provider sees it: `llm.*` reads `compare.judge.llm.*` (the llm
    section's schema defaults filled in) and its errors name `compare.judge.llm.*`; any other key is the
    session config's. So every provider, the cache key and the sanitizer work for the judge unchanged."""

    def __init__(self, base: Any) -> None:
        self.base = base
        node = schema()["properties"]["compare"]["properties"]["judge"]["properties"]["llm"]
        self.llm = apply_defaults(dict(base.get(f"{JUDGE_KEY}.llm") or {}), node)
        self.public = {**base.public, "llm": self.llm}
        prefix = f"{JUDGE_KEY}."
        self.secrets = {k[len(prefix):]: v for k, v in base.secrets.items() if k.startswith(f"{prefix}llm.")}
        self.path, self.lines = base.path, getattr(base, "lines", {})
        self._view = GenaiConfig(path=base.path, public=self.public, secrets=self.secrets)  # its get/resolve_path

    @property
    def base_dir(self) -> Path:
        return self.base.base_dir

    @staticmethod
    def full_key(dotted: str) -> str:
        return f"{JUDGE_KEY}.{dotted}" if dotted == "llm" or dotted.startswith("llm.") else dotted

    def get(self, dotted: str, default: Any = None) -> Any:
        if dotted != "llm" and not dotted.startswith("llm."):
            return self.base.get(dotted, default)
        return self._view.get(dotted, default)

    def resolve_path(self, dotted: str) -> Path | None:
        return self._view.resolve_path(dotted) if dotted.startswith("llm.") else self.base.resolve_path(dotted)

    def line(self, dotted: str) -> int | None:
        return self.base.line(self.full_key(dotted))

    def error(self, dotted: str, message: str) -> Any:
        return self.base.error(self.full_key(dotted), message)


@dataclass(frozen=True, eq=False)
class JudgeSpec:
    """compare.judge as an LLM judge, checked: its provider exists, temperature 0, its prompt loaded (and not
    edited without a version bump against the prompt lock)."""

    config: JudgeLLMConfig
    prompt: Any  # PromptTemplate

    @property
    def provider(self) -> str:
        return str(self.config.get("llm.provider"))

    @property
    def model_id(self) -> str:
        return str(self.config.get("llm.model_id"))

    @property
    def name(self) -> str:
        return f"llm:{self.model_id}"

    @property
    def identity(self) -> str:
        """Which judge decided, in one tag value: llm:<model_id>@<prompt id>@<version>."""
        return f"{self.name}@{self.prompt.ref}"


def load_judge_spec(config: Any) -> JudgeSpec | None:
    """compare.judge of a GenaiConfig: None for the F1 judge, else the checked LLM judge. A ConfigError names
    the key and its line (compare.judge.llm.temperature, compare.judge.prompt.id, ...)."""
    raw = config.get(JUDGE_KEY, F1)
    if raw is None or raw == F1:
        return None
    if not isinstance(raw, Mapping):
        raise config.error(JUDGE_KEY, f"must be {F1!r} or a mapping {{llm: {{...}}, prompt: {{id, version}}}}, got {raw!r}")
    view = JudgeLLMConfig(config)
    provider = view.get("llm.provider")
    if provider not in PROVIDERS:
        raise view.error("llm.provider", PROVIDERS.unknown_message(str(provider)))
    temperature = float(view.get("llm.temperature") or 0.0)
    if temperature != 0:
        raise view.error("llm.temperature", f"must be 0 for a judge (got {temperature:g}): verdicts drawn at random make "
                                            "pref_win_rate a sample of the judge, not a measurement")
    prompt_dir = config.resolve_path(f"{JUDGE_KEY}.prompt.dir") or config.base_dir / "prompts"
    try:
        prompt = load_prompt(prompt_dir, str(config.get(f"{JUDGE_KEY}.prompt.id")), config.get(f"{JUDGE_KEY}.prompt.version"))
    except PromptError as exc:
        raise config.error(f"{JUDGE_KEY}.prompt.id", f"the judge prompt: {exc}") from None
    used = prompt.variables()
    unknown, missing = sorted(used - VARIABLES), sorted(REQUIRED_VARIABLES - used)
    if unknown or missing:
        why = (f"reads {', '.join(unknown)}, which a judge prompt does not get" if unknown
               else f"never shows {' and '.join(missing)}")
        raise config.error(f"{JUDGE_KEY}.prompt.id", f"the judge prompt {prompt.ref} ({prompt.path}) {why} "
                                                     f"(its variables: {', '.join(sorted(VARIABLES))})")
    lock = config.resolve_path("prompt.lock_file") or config.base_dir / "prompts.lock.json"
    try:
        known = read_lock(lock).get(prompt.ref)
    except PromptError as exc:
        raise config.error("prompt.lock_file", str(exc)) from None
    msg = unbumped_edit_message(prompt, known, f"the prompt lock {lock.name}") if known else None
    if msg:
        raise config.error(f"{JUDGE_KEY}.prompt.version", msg)
    return JudgeSpec(view, prompt)


# -- the LLM judge -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    index: int  # the pair
    order: str  # "ab": the candidate is A; "ba": the candidate is B
    case_id: str
    messages: list[dict[str, str]]
    seed: int


class LLMJudge:
    """The judge model, asked about each pair twice. `runtime` (the session's: cache mode and file) decides
    whether calls are live, cached, recorded or replayed; `sanitizer` is the session's (the cache stores only
    sanitized requests and replies); `seed` is the run's (each case's calls use its case seed)."""

    def __init__(self, spec: JudgeSpec, *, runtime: Any = None, sanitizer: Any = None, seed: int = 0) -> None:
        self.spec, self.runtime, self.seed = spec, runtime, int(seed)
        self.sanitizer = sanitizer

    @property
    def name(self) -> str:
        return self.spec.name

    def judge(self, pairs: Sequence[Pair]) -> Verdicts:
        pairs = tuple(pairs)
        calls, fallback = self._calls(pairs)
        replies, cache_stats = self._ask(calls) if calls else ([], None)
        by_pair: dict[int, dict[str, Any]] = {}
        for call, gen in zip(calls, replies):
            by_pair.setdefault(call.index, {})[call.order] = gen
        wins: list[float] = []
        raw: dict[str, list[str]] = {}
        unparsed = disagreements = tokens_in = tokens_out = 0
        for i, (c, b) in enumerate(pairs):
            if i in fallback:
                wins.append(f1_preference(c, b))
                continue
            ab, ba = by_pair[i]["ab"], by_pair[i]["ba"]
            v_ab, v_ba = parse_verdict(ab.text), parse_verdict(ba.text)
            unparsed += (v_ab is None) + (v_ba is None)
            disagreements += preference(v_ab, "A") != preference(v_ba, "B")
            wins.append(combine(v_ab, v_ba))
            raw[c.id] = [ab.text[:RAW_LIMIT], ba.text[:RAW_LIMIT]]
            tokens_in += ab.input_tokens + ba.input_tokens
            tokens_out += ab.output_tokens + ba.output_tokens
        p_in = float(self.spec.config.get("llm.pricing.input_per_1k_tokens", 0.0) or 0.0)
        p_out = float(self.spec.config.get("llm.pricing.output_per_1k_tokens", 0.0) or 0.0)
        prompt = self.spec.prompt
        details = {
            "judge_provider": self.spec.provider, "judge_prompt": prompt.ref, "judge_prompt_hash": prompt.hash,
            "judge_calls": len(calls), "judge_unparsed": unparsed, "judge_disagreements": disagreements,
            "judge_tokens_input": tokens_in, "judge_tokens_output": tokens_out,
            "judge_cost_usd": (tokens_in * p_in + tokens_out * p_out) / 1000,
            "judge_f1_fallback": [pairs[i][0].id for i in sorted(fallback)],
            "judge_verdicts": raw,
        }
        tags = {TAG_PREF_JUDGE: self.spec.identity, TAG_PREF_JUDGE_PROMPT_HASH: prompt.hash}
        if cache_stats is not None:  # how the verdicts were obtained, beside genai.cache_hits of the answers
            tags.update({TAG_PREF_JUDGE_CACHE_HITS: str(cache_stats["hits"]),
                         TAG_PREF_JUDGE_CACHE_MISSES: str(cache_stats["misses"])})
        return Verdicts(self.name, tuple(wins), details, tags)

    def _calls(self, pairs: Sequence[Pair]) -> tuple[list[_Call], set[int]]:
        calls: list[_Call] = []
        fallback: set[int] = set()
        for i, (c, b) in enumerate(pairs):
            if c.answer is None or b.answer is None:
                fallback.add(i)
                continue
            seed = case_seed(self.seed, c.id)
            for order, (a, other) in (("ab", (c.answer, b.answer)), ("ba", (b.answer, c.answer))):
                variables = {"question": c.question, "gold": list(c.answers), "answer_a": a, "answer_b": other}
                try:
                    messages = self.spec.prompt.render(variables)
                except PromptError as exc:
                    raise JudgeError(f"case {c.id!r}: {exc}") from None
                calls.append(_Call(i, order, c.id, messages, seed))
        return calls, fallback

    def _ask(self, calls: Sequence[_Call]) -> tuple[list[Any], dict[str, int] | None]:
        """Every call's Generation, in call order (a pool when the provider is concurrent and the judge's
        llm.concurrency > 1: same replies, any order of arrival), and the cache's hit/miss counts (None: no cache)."""
        from concurrent.futures import ThreadPoolExecutor

        llm = self._llm()

        def one(call: _Call) -> Any:
            shown = "A" if call.order == "ab" else "B"
            with case_label(f"{call.case_id} (judge, candidate as {shown})"):  # a replay miss names the case
                try:
                    return llm.generate(call.messages, seed=call.seed)
                except Exception as exc:  # noqa: BLE001 - a provider's or the cache's failure, named by case
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    raise JudgeError(f"judging case {call.case_id!r} (candidate as {shown}) with {self.name} failed: "
                                     f"{type(exc).__name__}: {first}") from None

        workers = int(self.spec.config.get("llm.concurrency") or 1)
        concurrent = bool(getattr(provider_class(self.spec.provider), "concurrent", False))
        try:
            if workers > 1 and concurrent and len(calls) > 1:
                with ThreadPoolExecutor(max_workers=min(workers, len(calls)), thread_name_prefix="genai-judge") as pool:
                    replies = list(pool.map(one, calls))
            else:
                replies = [one(call) for call in calls]
            stats = getattr(llm, "stats", None) if getattr(llm, "cache", None) is not None else None
            return replies, ({"hits": int(stats.get("hits", 0)), "misses": int(stats.get("misses", 0))}
                             if isinstance(stats, Mapping) else None)
        finally:
            _close(llm)

    def _llm(self) -> Any:
        """The judge's provider through the session's response cache (built on first call: never in replay)."""
        sanitizer = self.sanitizer if self.sanitizer is not None else Sanitizer.from_config(self.spec.config.base)
        try:
            return make_llm(self.spec.config, self.runtime, sanitizer)
        except Exception as exc:  # noqa: BLE001 - a ConfigError or LLMError of the provider: a run error, not a crash
            raise JudgeError(f"building the judge {self.name} failed: {str(exc).strip()}") from None


def _close(llm: Any) -> None:
    """The judge's connections and its handle on the cache file: the judge runs once, at session end."""
    cache = getattr(llm, "cache", None)
    inner = (llm.inner if getattr(llm, "inner_built", False) else None) if cache is not None else llm
    for thing in (inner, cache):
        close = getattr(thing, "close", None)
        if callable(close):
            close()


class UnavailableJudge:
    """compare.judge names an LLM judge that could not be set up (`problem`): every comparison reports it as a
    run error and leaves pref_win_rate out, rather than silently switching to another judge."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    name = "llm"

    def judge(self, pairs: Sequence[Pair]) -> Verdicts:
        raise JudgeError(self.problem)


def build_judge(spec: JudgeSpec | None, problem: str | None = None, *, runtime: Any = None, sanitizer: Any = None,
                seed: int = 0) -> Judge:
    """The judge CompareOptions asks for: F1 (no spec), the LLM judge, or the reason it is unavailable."""
    if problem is not None:
        return UnavailableJudge(problem)
    if spec is None:
        return F1Judge()
    return LLMJudge(spec, runtime=runtime, sanitizer=sanitizer, seed=seed)
