"""The SECRET detector `pii_detectors.DETECTORS` runs, one finder per kind of secret: vendor key shapes (`sk-`, AWS,
GitHub, Slack, Stripe, Google), AWS secret access keys after their name or key id, `Bearer` and other `Authorization:`
values, JWTs, PEM private-key blocks, values assigned to a credential's name (`api_key=`, `password:`) and random
tokens written next to one (`the API key is Zx9...`). Every finding is one SECRET; `secret_kind` says which finder
took it (what the benchmark scores per kind). Precision over recall, as for the PII detectors: our own hashes,
commit SHAs, run ids and UUIDs are not secrets, nor is `sk-learn` or the word after "password" in prose."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Callable, Iterator

Span = tuple[int, int]

# Most specific first: a span that several finders take (`token=ghp_...`: CREDENTIAL and GITHUB) is of the first kind.
SECRET_KINDS: tuple[str, ...] = ("PEM", "JWT", "GITHUB", "SLACK", "SK_KEY", "AWS_KEY", "AWS_SECRET", "VENDOR_KEY",
                                 "BEARER", "AUTH_HEADER", "CREDENTIAL", "HIGH_ENTROPY")


def _random_enough(body: str, need_digit: bool) -> bool:
    if len(set(body)) < 6 or not any(ch.isalpha() for ch in body):
        return False
    return not need_digit or any(ch.isdigit() for ch in body)


# --------------------------------------------------------------------------- key shapes
# (pattern, whether the random part (group 1) must mix letters and digits, whether only group 1 is the secret): the
# check drops documentation stand-ins such as `sk-your-api-key-goes-here` while real keys, random base62,
# practically always mix. Where a context word names the value (`aws_secret_access_key = ...`), only the value is.
_Shape = tuple[re.Pattern[str], bool, bool]
_AWS_SECRET = r"[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"  # an AWS secret access key: 40 of base64
# OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-, sk-ant-api03-, sk-ant-oat01-) keys: 16
# characters at least after the prefix (see `_short_key_ok`)
_SK_KEY = re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|ant-(?:[a-z]{3,5}\d{2}-)?)?([A-Za-z0-9_-]{16,})(?![\w-])")
_SHAPES: dict[str, tuple[_Shape, ...]] = {
    "AWS_KEY": ((re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)([A-Z0-9]{16})(?![A-Za-z0-9])"), False, False),),
    "GITHUB": (
        (re.compile(r"(?<!\w)gh[pousr]_([A-Za-z0-9]{36,255})(?!\w)"), True, False),  # classic, OAuth, app tokens
        (re.compile(r"(?<!\w)github_pat_([A-Za-z0-9_]{22,255})(?!\w)"), True, False),  # fine-grained tokens
    ),
    "SLACK": (  # bot, user, app-level, refresh (xoxe.xoxp-1-...) tokens and incoming-webhook paths
        (re.compile(r"(?<![\w.-])(?:xoxe\.)?xox[abposre]-([A-Za-z0-9-]{10,})(?![\w-])"), True, False),
        (re.compile(r"(?<![\w-])xapp-\d-([A-Za-z0-9-]{10,})(?![\w-])"), True, False),
        (re.compile(r"(?<=hooks\.slack\.com/)(?:services|workflows|triggers)/([A-Za-z0-9_/-]{20,})"), True, True),
    ),
    "VENDOR_KEY": (
        (re.compile(r"(?<!\w)(?:sk|rk)_(?:live|test)_([A-Za-z0-9]{16,})(?!\w)"), True, False),  # Stripe secret keys
        (re.compile(r"(?<![\w-])AIza([0-9A-Za-z_-]{35})(?![\w-])"), True, False),  # Google API keys
    ),
    "AWS_SECRET": (
        # after a name for them: aws_secret_access_key = ..., AWS_SECRET_ACCESS_KEY=..., "SecretAccessKey": "...",
        # secretAccessKey: ..., aws_secret_key => ...
        (re.compile(r"(?i)(?:(?:aws)?[_.-]?secret[_.-]?access[_.-]?key|aws[_.-]?secret[_.-]?key)[\"']?"
                    r"(?:\s*(?:=>|[:=])\s*|[ \t]+)" + _AWS_SECRET), True, True),
        # ... or right after their key id, as in a credentials CSV or `id:secret`
        (re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}[\"']?(?:[ \t]*[,:;|][ \t]*|[ \t]+)" + _AWS_SECRET),
         True, True),
    ),
}


def _short_key_ok(body: str) -> bool:
    """A key of 16 to 19 characters (after the prefix) is one word of letters and digits: `sk-learn-tutorial-2` is
    a slug. From 20 characters on, `-` and `_` may occur, as in sk-proj- and sk-ant- keys."""
    return len(body) >= 20 or (body.isascii() and body.isalnum())


def _shapes(shapes: tuple[_Shape, ...]) -> Callable[[str], Iterator[Span]]:
    def find(text: str) -> Iterator[Span]:
        for pattern, need_digit, value_only in shapes:
            for m in pattern.finditer(text):
                if _random_enough(m.group(1), need_digit):
                    yield m.span(1) if value_only else m.span()
    return find


def _sk_keys(text: str) -> Iterator[Span]:
    for m in _SK_KEY.finditer(text):
        if _random_enough(m.group(1), True) and _short_key_ok(m.group(1)):
            yield m.span()


# --------------------------------------------------------------------------- Bearer, JWT, PEM

# An HTTP Authorization value `Bearer <token>`: the token is the secret, the word stays.
_BEARER = re.compile(r"(?i)(?<![A-Za-z])(bearer)(?:[ \t]+|%20)([A-Za-z0-9._~+/=-]{7,}[A-Za-z0-9_~+/=-])(?![\w~+/=-])")
_JWT = re.compile(r"(?<![\w.-])(eyJ[A-Za-z0-9_-]{4,})\.([A-Za-z0-9_-]{4,})\.([A-Za-z0-9_-]*)(?![\w.-])")
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"  # the whole block
    # or, truncated, its base64 lines (real line breaks, or `\n` escapes as in a JSON dump)
    r"|(?:[ \t]*(?:\r?\n|(?:\\r)?\\n)[ \t]*(?:[A-Za-z0-9+/=]{8,}|[A-Za-z-]+: [^\n\\]*))*)"
)


def _bearer_token_ok(word: str, token: str) -> bool:
    """A digit, or upper-case letters inside lower-case ones (random base64): not `Bearer authentication` nor
    `Bearer YOUR_TOKEN_HERE`. Without a digit only as Bearer, bearer or BEARER (the fast path in `sanitize` looks
    for those)."""
    if not _random_enough(token, False):
        return False
    if any(ch.isdigit() for ch in token):
        return True
    return word in ("Bearer", "bearer", "BEARER") and any(ch.islower() for ch in token) and any(
        ch.isupper() for ch in token[1:])


def _bearers(text: str) -> Iterator[Span]:
    for m in _BEARER.finditer(text):
        if _bearer_token_ok(m.group(1), m.group(2)):
            yield m.span(2)


def _jwt_header_ok(part: str) -> bool:
    try:
        header = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict)


def _jwts(text: str) -> Iterator[Span]:
    for m in _JWT.finditer(text):
        if _jwt_header_ok(m.group(1)):
            yield m.span()


def _pems(text: str) -> Iterator[Span]:
    for m in _PEM.finditer(text):
        yield m.span()


# --------------------------------------------------------------------------- credentials by their name

# A credential assigned to a name for one: `api_key=...`, `x-api-key: ...`, `OPENAI_API_KEY=...` (an upper-case name
# ending in _KEY, _TOKEN, _SECRET or _PASSWORD), `password: ...`, `"client_secret": "..."`, `access_token => ...`;
# names in any case, quotes optional, `=`, `:`, `:=` or `=>`. Only the value is the secret (6+ characters up to a
# space, quote, comma, `&`, `;` or `}`); `_credential_ok` keeps references, stand-ins and words.
CREDENTIAL_WORDS = ("key", "token", "secret", "passw", "passphrase", "pwd", "authoriz")  # in `text.lower()`
_ASSIGN = r"\\?[\"']?[ \t]*(?:=>|:=|[:=])[ \t]*\\?[\"']?"
_CRED_VALUE = r"([^\s\"'`,&;}\\]{5,}[^\s\"'`,&;}\\.):])"  # a full stop, `)` or `:` after it is prose or code
_CREDENTIAL = re.compile(
    r"(?i)(?P<name>(?<![A-Za-z0-9])(?:api[_-]?key|passw(?:or)?d|passphrase|pwd|secret(?:[_-]?key)?"
    r"|(?:access|refresh|o?auth)[_-]?token)|(?-i:(?<=[A-Z0-9])_(?:KEY|TOKEN|SECRET|PASSWORD)))" + _ASSIGN + _CRED_VALUE
)
# `Authorization: <scheme> <credentials>` (Basic, Token, Digest...; Bearer has `_BEARER` too), or the credentials alone
_AUTHORIZATION = re.compile(
    r"(?i)(?<![A-Za-z0-9])authorization" + _ASSIGN + r"(?:([A-Za-z][\w.-]*)(?:[ \t]+|%20))?" + _CRED_VALUE
)
# not a value but where it comes from: ${ENV}, $ENV, %(name)s, {{ x }}, <SECRET:...>, os.environ[, getpass(), a.b, URLs,
# `f(x).y` and `a.{b}.c` (code), `sk-...xyz` (an elided example)
_CRED_REFERENCE = re.compile(r"[<$%{\[(*].*|[A-Za-z_]+(?:\.[A-Za-z_]+)+|[\w.]+[(\[].*|[A-Za-z][\w+.-]*://.*"
                             r"|[\w.]+[)\]]\.[A-Za-z_].*|.*\{\w*\}.*|.*\.\.\..*")
# A password of letters only or digits only (`swordfish`, `12345678`) counts when nothing but its end follows it
# (quoted, or the end of the line, `;` or `&` as in connection and query strings; after `:` also `,`, `)`, `}` or a
# full stop): `Password: Enter your password` and `f(password=pw_var, ...)` stay. Type names and stand-ins never do.
_PASSWORD_NAME = re.compile(r"(?i)_?passw(?:or)?d|passphrase")
_NOT_A_PASSWORD = frozenset(
    "none null nil true false required optional empty hidden redacted masked removed omitted string integer boolean "
    "secret secrets password passwords passwd passphrase changeit example sample default unset".split())
_PLAIN_VALUE_END = re.compile(r"[ \t]*(?:\Z|\r?\n|[;&])")
_PLAIN_VALUE_END_COLON = re.compile(r"[ \t]*(?:\Z|\r?\n|[;&,)\]}]|\.(?:\s|\Z))")
_AT_HOST = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?::\d+)?(?:/.*)?\Z")


def _credential_ok(value: str, mixed_case: bool = False) -> bool:
    """Random enough and not a reference: a digit or a symbol (`hunter2Hunter2!`, `Zx9Q...`), or with `mixed_case`
    (the credentials after an Authorization scheme: base64) upper inside lower. Words, `YOUR_API_KEY`,
    `your-key-here` and `********` stay."""
    if not _random_enough(value, False) or _CRED_REFERENCE.fullmatch(value):
        return False
    if any(ch.isdigit() or not (ch.isalpha() or ch in "_.-") for ch in value):
        return True
    return mixed_case and any(ch.islower() for ch in value) and any(ch.isupper() for ch in value[1:])


def _plain_password(m: re.Match[str], text: str) -> bool:
    value = m.group(2)
    if not (_PASSWORD_NAME.fullmatch(m.group("name")) and value.isascii() and (value.isalpha() or value.isdigit())):
        return False
    if value.lower() in _NOT_A_PASSWORD:
        return False
    start, end = m.span(2)
    quote = text[start - 1]
    if quote in "\"'`":
        return text[end:end + 1] == quote
    if "=" not in text[m.end("name"):start]:  # `password: x)`, `{password: x, ...}`: prose or YAML, not a call
        return _PLAIN_VALUE_END_COLON.match(text, end) is not None
    return _PLAIN_VALUE_END.match(text, end) is not None


def _credentials(text: str) -> Iterator[Span]:
    lower = text.lower()
    if not any(w in lower for w in CREDENTIAL_WORDS):
        return
    for m in _CREDENTIAL.finditer(text):  # group 2: the value
        if m.group("name")[:3].lower() == "pwd" and m.group(2)[0] in "/~":  # $PWD, a folder
            continue
        if _credential_ok(m.group(2)) or _plain_password(m, text):
            host = _AT_HOST.search(m.group(2), 6)  # `x-access-token:ghs_...@github.com/org/repo`: the host is not
            yield m.start(2), m.start(2) + host.start() if host else m.end(2)


def _auth_headers(text: str) -> Iterator[Span]:
    if "authoriz" not in text.lower():
        return
    for m in _AUTHORIZATION.finditer(text):
        if _credential_ok(m.group(2), m.group(1) is not None):
            yield m.span(2)


# --------------------------------------------------------------------------- random tokens next to a credential word

# `the API key is Zx9...`, `token 8f7d6e5c...`, `Your password: hunter2Hunter2!`, `secret key for prod = ...`,
# `set the password to ...`: a word naming a credential (with a qualifier: api, access, client... but not cache_key
# or pad_token), optionally `for <x>`, then `is`, `to`, `:`, `=`, an arrow or only a space, then the value. A key or
# token must look random (see `_high_entropy`); a password needs a letter and a digit or symbol (`_credential_ok`).
_NEAR_WORD = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(?:(?:api|access|secret|private|client|auth|app|bot|signing|session|refresh|personal"
    r"|deploy|master|admin|root|db|database|service)[ _-]?)?"
    r"(?P<word>key|token|secret|password|passwd|passphrase|pwd)s?(?![A-Za-z0-9])"
    r"(?:[ \t]+(?:for|of|on|in|to)[ \t]+[\w.-]{1,40})?"
    r"(?:[ \t]+(?:is|was|are|were|to)\b[ \t]*:?|[ \t]*(?::=|=>|->|→|[:=]))?"
    r"[ \t]*[\"'`*]*(?<=[\s:=>\"'`*])"
    r"(?P<value>[^\s\"'`<>,&;}\\]{8,512})"
)
_PASSWORD_WORDS = frozenset({"password", "passwd", "passphrase", "pwd"})
# "<qualifier> key/token ...": ids, hashes, positions and public halves, not secrets
_NOT_SECRET_QUALIFIERS = frozenset(
    "public cache sort primary foreign partition row composite idempotency dedup deduplication lookup hash index map "
    "dict request object bucket page next continuation pagination cursor sync pad eos bos unk mask special input "
    "output max total num first last start end license product registry".split())
_LAST_WORD = re.compile(r"([A-Za-z]+)[ \t_-]*\Z")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]+")
# ids and hashes, not secrets by their look: UUIDs, git commit SHAs and sha256 digests (our config hashes and pins)
_NOT_A_TOKEN = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[0-9a-f]{40}|[0-9a-f]{64}|[/~.].*")
_WORDISH = re.compile(r"[A-Z][a-z]{2,}")  # a capitalised word


def _char_class(ch: str) -> int:
    return 0 if ch.isdigit() else (1 if ch.islower() else 2)


def _high_entropy(value: str) -> bool:
    """16+ characters of a token alphabet with letters and digits, 8+ distinct, and changing between digit, lower
    and upper case at a quarter of neighbouring pairs at least (random base62 ~0.6, hex ~0.47): identifiers such
    as `feature_flag_v2_enabled` or `MyServiceConfigV2Handler` change far less, and are half words or more."""
    if len(value) < 16 or not _TOKEN_CHARS.fullmatch(value) or _NOT_A_TOKEN.fullmatch(value):
        return False
    if _CRED_REFERENCE.fullmatch(value) or len(set(value)) < 8:
        return False
    if not (any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)):
        return False
    pairs = [(a, b) for a, b in zip(value, value[1:]) if a.isalnum() and b.isalnum()]
    changes = sum(_char_class(a) != _char_class(b) for a, b in pairs)
    if len(pairs) < 12 or changes < 0.25 * len(pairs):
        return False
    return sum(map(len, _WORDISH.findall(value))) < 0.5 * len(value)  # `PKCS12PrivateKeyTypes` is made of words


def _near_word(text: str) -> Iterator[Span]:
    for m in _NEAR_WORD.finditer(text):
        value = m.group("value")
        value = value.rstrip(".,;:?)]}") if m.group("word").lower() in _PASSWORD_WORDS else value.rstrip(".,;:?!)]}")
        before = _LAST_WORD.search(text, max(0, m.start() - 24), m.start())
        if before is not None and before.group(1).lower() in _NOT_SECRET_QUALIFIERS:  # a public key, a cache key
            continue
        ok = (len(value) >= 8 and value[0] not in "/~" and _credential_ok(value)  # not $PWD's folder
              if m.group("word").lower() in _PASSWORD_WORDS else _high_entropy(value))
        if ok:
            start = m.start("value")
            yield start, start + len(value)


# --------------------------------------------------------------------------- all kinds

_FINDERS: dict[str, Callable[[str], Iterator[Span]]] = {
    "PEM": _pems, "JWT": _jwts, "GITHUB": _shapes(_SHAPES["GITHUB"]), "SLACK": _shapes(_SHAPES["SLACK"]),
    "SK_KEY": _sk_keys, "AWS_KEY": _shapes(_SHAPES["AWS_KEY"]), "AWS_SECRET": _shapes(_SHAPES["AWS_SECRET"]),
    "VENDOR_KEY": _shapes(_SHAPES["VENDOR_KEY"]), "BEARER": _bearers, "AUTH_HEADER": _auth_headers,
    "CREDENTIAL": _credentials, "HIGH_ENTROPY": _near_word,
}
# What a finding of each kind holds, in `text.lower()`: a finder runs only on text with one of them (most text has none)
_NEEDLES: dict[str, tuple[str, ...]] = {
    "PEM": ("-----begin",), "JWT": ("eyj",), "GITHUB": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "SLACK": ("xox", "xapp-", "hooks.slack.com"), "SK_KEY": ("sk-",), "AWS_KEY": ("akia", "asia"),
    "AWS_SECRET": ("secret", "akia", "asia"), "VENDOR_KEY": ("_live_", "_test_", "aiza"), "BEARER": ("bearer",),
    "AUTH_HEADER": ("authoriz",), "CREDENTIAL": CREDENTIAL_WORDS, "HIGH_ENTROPY": CREDENTIAL_WORDS,
}
assert tuple(_FINDERS) == tuple(_NEEDLES) == SECRET_KINDS


def secrets(text: str) -> Iterator[Span]:
    """The spans every finder proposes (overlapping; `pii.detect` resolves them)."""
    lower = text.lower()
    for kind, find in _FINDERS.items():
        if any(n in lower for n in _NEEDLES[kind]):
            yield from find(text)


def secret_kind(text: str, start: int, end: int) -> str | None:
    """The kind of the SECRET finding `text[start:end]`: the first of `SECRET_KINDS` whose finder proposes exactly
    that span; None for a placeholder or a span no finder proposes on `text` as it is."""
    for kind, find in _FINDERS.items():
        if any(span == (start, end) for span in find(text)):
            return kind
    return None
