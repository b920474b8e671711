"""The one sanitizer: everything that leaves the process (run folder, MLflow, cache, cassette,
terminal, JUnit, error reports) passes through a `Sanitizer` built once from the config.

Layers, in this order: URL user info (`https://user:pass@host` -> `https://***@host`), PII as typed
keyed placeholders (`safety.redact`; before the secrets, so a leaked configured key shaped like a key
still counts as a SECRET flag), the config's secret values as `***`, then token-like URL query
parameters. All but PII apply even with `safety.redact: false`: a private store may keep PII, never a key;
so the SECRET findings (API keys, AWS keys, GitHub and Slack tokens, Bearer tokens, JWTs, private keys, the value
of `password=`, `api_key:`, `Authorization:` and the like, random tokens next to key/secret/token/password: see
safety/pii_secrets.py) are placeholders with it too.
Text that cannot be written as UTF-8 (a lone surrogate such as "\\ud800", from a pipeline's bad decode) has it
replaced with U+FFFD first, here and nowhere else: one bad character in an answer, its metadata or an error must not
cost the journal line or the record that holds it.
Loopback addresses (127.0.0.0/8, ::1) and the configured tracking server's address are not PII: they stay
readable, so an error about the local stub or the team's MLflow server still says where it failed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import traceback
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pytest_genai.safety.pii import detect, detect_secrets, is_placeholder, placeholder
from pytest_genai.safety.pii_detectors import OBFUSCATED_HINT
from pytest_genai.safety.pii_secrets import CREDENTIAL_WORDS

MASK = "***"
SHORT_SECRET = 8  # shorter secrets are replaced only as whole tokens: "xyz" must not eat "xyzzy"

# scheme://user:password@host (any scheme) -> scheme://***@host
URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@", re.IGNORECASE)
# http(s)://token@host, pip's form for a token alone (git+https://ghp_...@github.com/...); ssh's `git@` is kept
_URL_TOKEN = re.compile(r"(\b(?:[a-z0-9]+\+)?https?://)[^/\s@:]+@", re.IGNORECASE)
# presigned or token-carrying URLs: ?token=..., &X-Amz-Signature=...
_URL_QUERY_SECRET = re.compile(
    r"([?&](?:access_token|auth|token|api[_-]?key|apikey|key|password|passwd|secret|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential)=)[^&#\s\"'<>]+",
    re.IGNORECASE,
)
# Whatever a PII detector (or a placeholder) can match holds one of these: see safety/pii.py.
_PII_CHARS = re.compile(r"[\d@<]")
# an AWS key id can be all letters; JWT and PEM prefixes; a `Bearer` token without a digit (Bearer, bearer, BEARER)
_PII_WORDS = ("AKIA", "ASIA", "eyJ", "-----BEGIN", "earer", "EARER")
_SURROGATE = re.compile("[\ud800-\udfff]")  # never in UTF-8: a str holds one only when it was made wrong
_CACHED_MAX_CHARS = 65536  # longer texts (a whole traceback, a document) are rare repeats: not cached


@dataclass(frozen=True)
class Sanitizer:
    """Plain, hashable and picklable; each process builds its own with `from_config`."""

    redact_pii: bool  # safety.redact (default true)
    key: bytes | None  # safety.redact_key (an ${ENV} secret); None: unkeyed placeholders
    secrets: tuple[str, ...]  # resolved secret values of the config (api keys, the redact key...)
    types: tuple[str, ...] | None = None  # PII types to redact (None: all); SECRET always, even with redact_pii off
    hosts: tuple[str, ...] = ()  # infrastructure addresses kept readable (the tracking server's), besides loopback

    @property
    def keyed(self) -> bool:
        """False means placeholders of low-entropy values can be confirmed by guessing: say so where shown."""
        return self.key is not None

    def text(self, s: str | None) -> str | None:
        """Lone surrogates -> U+FFFD, URL user info, PII placeholders, secret values -> '***', URL query tokens;
        idempotent."""
        if not s:
            return s
        if len(s) > _CACHED_MAX_CHARS:
            return _sanitize(self, s)
        return _sanitize_cached(self, s)

    def obj(self, value: Any) -> Any:
        """A sanitized copy through dicts (keys and values), lists, tuples and sets; other scalars as they are."""
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:  # most of a case result: first, cheaply
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self._value_of(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.obj(v) for v in value]
        if isinstance(value, tuple):
            items = [self.obj(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        if isinstance(value, (set, frozenset)):
            return type(value)(self.obj(v) for v in value)
        return value

    def _value_of(self, key: Any, value: Any) -> Any:
        """A dict's value; under a credential's name (`{"api_key": "Zx9..."}`) it is judged as `api_key=Zx9...`
        would be in text, so a key kept as structured data is masked like one written out."""
        if type(value) is str and type(key) is str and any(w in key.lower() for w in CREDENTIAL_WORDS):
            joined = f"{key}={value}"
            masked = self.text(joined) or ""
            if masked != joined and masked.startswith(f"{key}="):
                return masked[len(key) + 1:]
        return self.obj(value)

    def secrets_only(self) -> "Sanitizer":
        """For text that names our own infrastructure (a tracking URI, a host): secrets and URL credentials
        masked, hosts left readable. Never for case data."""
        from dataclasses import replace

        return replace(self, redact_pii=False)

    def digest(self, data: bytes) -> str:
        """64 hex of HMAC-SHA256(key, data), or sha256(data) unkeyed: cache keys from raw values, never placeholders."""
        if self.key is not None:
            return hmac.new(self.key, data, hashlib.sha256).hexdigest()
        return hashlib.sha256(data).hexdigest()

    def exception(self, exc: BaseException, limit: int = 8) -> str:
        """The last `limit` frames (of each chained exception) and the message, sanitized."""
        formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-limit))
        return _sanitize(self, formatted.rstrip("\n"))

    @classmethod
    def from_config(cls, config: Any) -> "Sanitizer":
        """`config` is a `GenaiConfig`: `safety.redact`, `safety.redact_key` and every resolved `${ENV}` secret."""
        key = config.get("safety.redact_key")
        if key is not None and not str(key):
            raise config.error("safety.redact_key", "the environment variable it names is empty")
        secrets = getattr(config, "secrets", {}) or {}
        host = uri_host(config.get("tracking.uri"))
        return cls(
            redact_pii=bool(config.get("safety.redact", True)),
            key=str(key).encode("utf-8") if key is not None else None,
            secrets=tuple(str(v) for v in secrets.values()),
            hosts=(host,) if host else (),
        )


def uri_host(uri: Any) -> str | None:
    """The host of a URI (`http://10.0.0.5:5000` -> `10.0.0.5`, `http://[fd00::1]/` -> `fd00::1`), or None."""
    if not isinstance(uri, str) or "://" not in uri:
        return None
    try:
        return urlsplit(uri).hostname or None
    except ValueError:
        return None


@lru_cache(maxsize=256)
def _readable_ip(value: str, hosts: tuple[str, ...]) -> bool:
    """Loopback or one of `hosts` (compared as addresses: `::1` is `0:0:0:0:0:0:0:1`)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    for host in hosts:
        try:
            if ipaddress.ip_address(host) == ip:
                return True
        except ValueError:
            continue
    return False


def headline(text: str | None, default: str = "") -> str:
    """The last non-blank line of a formatted exception (`Sanitizer.exception`): its type and message, which is
    what a one-line report (a run error, a failed case's summary, a span's exception event) shows."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else default


def one_line(error: str) -> str:
    """What a case records as its error: a formatted exception becomes its headline (type and message), keeping a
    prefix that says which step raised (`a per-case scorer failed: ValueError: ...`); one line stays as it is."""
    if "\n" not in error:
        return error
    prefix = error.split("Traceback (most recent call last):", 1)[0] if "Traceback (most" in error else ""
    return prefix.strip() + (" " if prefix.strip() else "") + headline(error)


def _sanitize(san: Sanitizer, s: str) -> str:
    if not s.isascii() and _SURROGATE.search(s) is not None:  # a pair becomes its character, a lone one U+FFFD
        s = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    secrets = _secret_pattern(san.secrets)
    url = "://" in s
    if url and "@" in s:  # before PII: the e-mail detector would take `pw@host` and leave the user name
        s = _url_userinfo(s)
    if _maybe_pii(s):  # with redact_pii off, only the SECRET findings: a key is never kept
        s = _redact_pii(san, s, secrets)
    if secrets is not None and any(v in s for v in secrets.values):
        s = secrets.pattern.sub(MASK, s)
    if url and "=" in s:  # after PII: `?token=<SECRET:...>` keeps its flag
        s = _URL_QUERY_SECRET.sub(lambda m: m.group(1) + MASK, s)
    return s


_sanitize_cached = lru_cache(maxsize=8192)(_sanitize)  # chunks, prompts and questions repeat across cases


def _maybe_pii(s: str) -> bool:
    if _PII_CHARS.search(s) is not None or any(w in s for w in _PII_WORDS):
        return True
    lower = s.lower()  # a credential's name (`password: ...`, `X-Api-Key: ...`), in any case
    return any(w in lower for w in CREDENTIAL_WORDS) or OBFUSCATED_HINT.search(s) is not None  # `jane [at] ex...`


def _redact_pii(san: Sanitizer, s: str, secrets: _Secrets | None) -> str:
    """Placeholders for every finding; a secret that a finding would cut (the password
    `hunter2 jane@corp.example x`) is masked first, so no placeholder leaves part of it behind."""
    types = _redacted_types(san.types)
    find = (lambda t: detect(t, types)) if san.redact_pii else detect_secrets  # a key is never kept
    findings = find(s)
    if not findings:
        return s
    if secrets is not None and any(v in s for v in secrets.values):
        spans = [m.span() for m in secrets.pattern.finditer(s)]
        if any(f.start < e and b < f.end and not (f.start <= b and e <= f.end) for f in findings for b, e in spans):
            s = secrets.pattern.sub(MASK, s)
            findings = find(s)
    out: list[str] = []
    pos = 0
    for f in findings:
        out.append(s[pos:f.start])
        keep = is_placeholder(f.value) or (f.type == "IP" and _readable_ip(f.value, san.hosts))
        out.append(f.value if keep else placeholder(f.type, f.value, san.key))
        pos = f.end
    out.append(s[pos:])
    return "".join(out)


def _redacted_types(types: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The finding types made placeholders: SECRET whatever `types` says."""
    return types if types is None or "SECRET" in types else (*types, "SECRET")


@dataclass(frozen=True)
class _Secrets:
    values: tuple[str, ...]  # `in` on each is the fast "nothing to do" check
    pattern: re.Pattern[str]


@lru_cache(maxsize=64)
def _secret_pattern(secrets: tuple[str, ...]) -> _Secrets | None:
    """One alternation, longest first; short secrets only where no letter or digit touches them."""
    values = sorted({v for v in secrets if v and v.strip("*")}, key=lambda v: (-len(v), v))
    if not values:
        return None
    parts = []
    for v in values:
        p = re.escape(v)
        if len(v) < SHORT_SECRET:
            p = ("(?<![^\\W_])" if v[0].isalnum() else "") + p + ("(?![^\\W_])" if v[-1].isalnum() else "")
        parts.append(p)
    return _Secrets(tuple(values), re.compile("|".join(parts)))


def _url_userinfo(s: str) -> str:
    """`scheme://user:pass@host` and `https://token@host` -> `scheme://***@host`, as in lock and
    requirement lines (`pkg @ https://u:t@host/x.whl`, `--extra-index-url https://u:p@h`)."""
    s = URL_CREDENTIALS.sub(r"\1" + MASK + "@", s)
    return _URL_TOKEN.sub(lambda m: m.group(0) if m.group(0).endswith(MASK + "@") else m.group(1) + MASK + "@", s)
