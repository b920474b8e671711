"""The PII and secret detectors `pii.detect` runs: for each type a regular expression that proposes candidates and
a validator that rejects what the shape alone cannot (Luhn for cards, mod-97 for IBANs, reserved SSN ranges,
`ipaddress` for IPv6; the SECRET finders, one per kind of secret, are in pii_secrets.py). Precision is favoured over
recall: a flag fails a gate or blocks an answer, so a date or a version number must not look like a phone number or
an IP address.

A new detector goes into `DETECTORS` (its type into `pii.PII_TYPES`); `pii.detect` resolves overlaps."""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Callable, Iterator
from urllib.parse import unquote

from pytest_genai.safety.pii_secrets import secrets

# --------------------------------------------------------------------------- checksums

def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers (and IMEIs)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries that issue IBANs (the SWIFT registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_valid(iban: str) -> bool:
    """Known country, its exact length, and the ISO 7064 mod-97 check (remainder 1). Spaces ignored."""
    s = iban.replace(" ", "").upper()
    if len(s) < 5 or not (s.isascii() and s.isalnum()) or not s[2:4].isdigit() or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# --------------------------------------------------------------------------- detectors
# Each yields the (start, end) spans of validated candidates; `detect` resolves overlaps.

Span = tuple[int, int]

_EMAIL = re.compile(
    r"(?<![\w.%+@-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w@-])"
)
# what precedes the password of `https://user:password@host`, which is not an e-mail's name
_URL_USERINFO = re.compile(r"://[^/\s@:]*:\Z")
# Retina assets (`icon@2x.png`) and package specs look like addresses but end in a file extension.
_FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp ico pdf txt md py js ts json yaml yml html css zip gz".split())


# URL-encoded (`jane.doe%40example.com` in a query string, `%2540` encoded twice); it may follow another escape
# (`to%3Djane%40example.com`), and its placeholder is the plain address's (see `pii.placeholder`).
_EMAIL_ENCODED = re.compile(
    r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![\w.%+@-]))[A-Za-z0-9](?:[A-Za-z0-9._+-]|%2[Bb]){0,62}(?<!\.)"
    r"%(?:25)?40(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w@-])"
)


# Obfuscated: `jane(at)example(dot)com`, `jane.doe [at] example.com`, `jane dot doe at example dot com`, `JANE AT
# EXAMPLE DOT COM`. With a bare ` at ` the domain must have a spelt-out dot and the name must not be a word that
# precedes "at" in prose (`look at example dot com`); the last label is a known top-level domain or two letters.
_AT_WORD = r"[ \t]+at[ \t]+"
_AT = r"(?:[ \t]*[(\[{<][ \t]*at[ \t]*[)\]}>][ \t]*|" + _AT_WORD + ")"
_SPELT_DOT = r"[ \t]*[(\[{<][ \t]*dot[ \t]*[)\]}>][ \t]*|[ \t]+dot[ \t]+"
_DOT = r"(?:\.|" + _SPELT_DOT + ")"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_+-]{0,62}[A-Za-z0-9])?"
_TLD = r"(?:com|org|net|edu|gov|mil|int|info|biz|name|pro|io|ai|app|dev|me|tv|xyz|cloud|email|online|site|tech" \
       r"|[a-z]{2})"
_EMAIL_OBFUSCATED = re.compile(
    rf"(?i)(?<![\w.%+@-])(?P<local>{_LABEL}(?:{_DOT}{_LABEL}){{0,3}})(?P<at>{_AT})"
    rf"(?P<domain>(?:{_LABEL}{_DOT}){{1,3}}){_TLD}(?![\w@-])"
)
OBFUSCATED_HINT = re.compile(r"(?i)[(\[{<][ \t]*at[ \t]*[)\]}>]|[ \t]dot[ \t]")  # every obfuscated address has one
_SPELT_DOT_RE = re.compile(_SPELT_DOT, re.IGNORECASE)
_AT_RE = re.compile(_AT, re.IGNORECASE)
# words a bare "at" follows in prose: `look at`, `meet me at`, `works at`, `available at`...
_BEFORE_AT = frozenset(
    "a an the i me we us you he him she her it they them this that these those here there is are was were be been "
    "am look looks looked looking stare arrive arrived arrives arriving work works worked working meet meeting met "
    "stay stayed stays live lives lived living aim aimed point pointed laugh laughed shop shopping available located "
    "based hosted found sold listed published posted online office job jobs study studied teach taught hired started "
    "start starts end ends ended open opens rate priced anything something nothing everything people team site "
    "website page visit visited check sign log click see find reach contact join write email mail call "
    "good great best better bad worse worst well home".split())


def _obfuscated_emails(text: str) -> Iterator[Span]:
    pos = 0
    while (m := _EMAIL_OBFUSCATED.search(text, pos)) is not None:
        bare_at = re.fullmatch(_AT_WORD, m.group("at"), re.IGNORECASE) is not None
        if bare_at and (_SPELT_DOT_RE.search(m.group("domain")) is None or m.group("local").lower() in _BEFORE_AT):
            pos = m.start() + 1  # `email me at jane dot doe at ...`: the address may start further on
            continue
        yield m.span()
        pos = m.end()


def plain_email(value: str) -> str:
    """The address an e-mail finding stands for: `jane.doe%40example.com` and `jane dot doe at example dot com` are
    `jane.doe@example.com` (one placeholder for all three, see `pii.placeholder`)."""
    if "@" in value:
        return value
    decoded = unquote(unquote(value))
    if "@" in decoded:
        return decoded
    return _SPELT_DOT_RE.sub(".", _AT_RE.sub("@", value, count=1))


def _emails(text: str) -> Iterator[Span]:
    matches = _EMAIL.finditer(text) if "@" in text else iter(())
    if "%" in text and "40" in text:
        matches = itertools.chain(matches, _EMAIL_ENCODED.finditer(text))
    for m in matches:
        if ".." in m.group(0) or m.group(1).lower() in _FILE_EXTENSIONS:
            continue
        if re.match(r":[\w~/]", text[m.end():m.end() + 2]):  # git@github.com:org/repo.git is an SSH remote
            continue
        if _URL_USERINFO.search(text, max(0, m.start() - 64), m.start()):  # https://user:<token>@host: a password
            continue
        yield m.span()
    if OBFUSCATED_HINT.search(text) is not None:
        yield from _obfuscated_emails(text)


_PHONE_INTL = re.compile(  # +CC or 00CC, then groups; digits counted by the validator
    r"(?<![\w+])(?:\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5})(?:[ .-]?\d{2,5}){1,5}"
    r"(?![\w-]|[.]\d)"
)
_PHONE_NANP = re.compile(  # (415) 555-0132, 415-555-0132, 415.555.0132, 1-800-555-0199
    r"(?<![\w+.-])(?:1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[.]\d)"
)
_PHONE_NATIONAL = re.compile(  # trunk 0: 020 7946 0958, 030/12345678, 06 12 34 56 78, (0161) 496 0000
    r"(?<![\w+.-])(?:\(0\d{1,4}\)|0\d{1,4})(?:[ ./-]|(?<=\))\s?)\d{2,8}(?:[ .-]\d{2,8}){0,4}(?![\w-]|[.]\d)"
)
_PHONE_CONTEXT = re.compile(  # a bare number right after a phone word: "call 5550134", "Tel: 4155550132"
    r"(?i)\b(?:phone|telephone|tel|mobile|cell|call|fax|whatsapp|sms|text|dial)\b(?:\s+(?:me|us|him|her|them))?"
    r"(?:\s*(?:number|no\.?|nr\.?|#))?(?:\s*(?:is|at|on))?\s*[:.]?\s*"
    r"(\+?\d[\d .-]{5,18}\d)(?![\w-]|[.]\d)"
)
_DATE_LIKE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")


def _digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _part_of_longer_number(text: str, start: int, end: int) -> bool:
    """A phone number is a whole run of digit groups, never the tail or head of a longer one (an IBAN, a card)."""
    before, after = text[max(0, start - 2):start], text[end:end + 2]
    return re.fullmatch(r"\d[ .-]", before) is not None or re.fullmatch(r"[ .-]\d", after) is not None


# Anything shaped like an IBAN (valid or not) is an account number, so no phone is taken from inside it.
_IBAN_SHAPED = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")


def phones(text: str) -> Iterator[Span]:
    iban_like = [m.span() for m in _IBAN_SHAPED.finditer(text)] if any(c.isupper() for c in text) else []
    for start, end in _phone_candidates(text):
        if _part_of_longer_number(text, start, end) or any(s <= start and end <= e for s, e in iban_like):
            continue
        yield start, end


def _phone_candidates(text: str) -> Iterator[Span]:
    for m in _PHONE_INTL.finditer(text):
        digits = _digit_count(m.group(0).replace("(0)", ""))
        if m.group(0).startswith("00"):
            digits -= 2
        if 8 <= digits <= 15:
            yield m.span()
    for m in _PHONE_NANP.finditer(text):
        yield m.span()
    for m in _PHONE_NATIONAL.finditer(text):
        if 9 <= _digit_count(m.group(0)) <= 12 and not _DATE_LIKE.fullmatch(m.group(0)):
            yield m.span()
    for m in _PHONE_CONTEXT.finditer(text):
        number = m.group(1)
        if 7 <= _digit_count(number) <= 15 and not _DATE_LIKE.fullmatch(number):
            yield m.span(1)


# Digit groups separated by one space or dash; card shapes are picked out of each run of groups, so a
# number followed by an expiry ("4111 1111 1111 1111 12/29") or preceded by a count is still seen.
_DIGIT_RUN = re.compile(r"(?<![\w.+-])\d+(?:[ -]\d+)*(?![\w])")
_GROUP = re.compile(r"\d+")
_CARD_SHAPES = re.compile(r"4,4,4,[1-4]|4,4,4,4,[1-3]|4,6,[45]")


def _card_shape_ok(lengths: list[int]) -> bool:
    if len(lengths) == 1:
        return 13 <= lengths[0] <= 19
    return _CARD_SHAPES.fullmatch(",".join(map(str, lengths))) is not None


# (prefixes, allowed lengths) per network; a Luhn-valid number outside these is an id, not a card.
_CARD_NETWORKS: tuple[tuple[tuple[str, ...], frozenset[int]], ...] = (
    (("4",), frozenset({13, 16, 19})),  # Visa
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), frozenset({16})),  # Mastercard
    (("34", "37"), frozenset({15})),  # American Express
    (("6011", "65") + tuple(str(p) for p in range(644, 650)), frozenset(range(16, 20))),  # Discover
    (("36", "38", "39") + tuple(str(p) for p in range(300, 306)), frozenset(range(14, 20))),  # Diners Club
    (tuple(str(p) for p in range(3528, 3590)), frozenset(range(16, 20))),  # JCB
    (("62",), frozenset(range(16, 20))),  # UnionPay
    (("50", "56", "57", "58", "6304", "6759", "6761", "6762", "6763"), frozenset(range(13, 20))),  # Maestro
)


def card_network_known(digits: str) -> bool:
    return any(len(digits) in lengths and digits.startswith(prefixes) for prefixes, lengths in _CARD_NETWORKS)


def _cards(text: str) -> Iterator[Span]:
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < 13:
            continue
        groups = [g.span() for g in _GROUP.finditer(text, run.start(), run.end())]
        i = 0
        while i < len(groups):
            for k in range(min(5, len(groups) - i), 0, -1):  # longest shape starting at group i
                part = groups[i:i + k]
                seps = {text[a[1]] for a in part[:-1]}
                digits = "".join(text[a:b] for a, b in part)
                if (len(seps) <= 1 and _card_shape_ok([b - a for a, b in part])
                        and card_network_known(digits) and luhn_valid(digits)):
                    yield part[0][0], part[-1][1]
                    i += k
                    break
            else:
                i += 1


_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
_SSN_CONTEXT = re.compile(  # undashed forms only next to the words that name them
    r"(?i)\b(?:ssn|ss#|social security(?: number| no\.?| #)?)\s*(?:#|number|no\.?)?\s*(?:is\s+)?[:=]?\s*"
    r"(\d{3})([ ]?)(\d{2})\2(\d{4})(?![\w-])"
)


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        if ssn_valid(*m.groups()):
            yield m.span()
    for m in _SSN_CONTEXT.finditer(text):
        if ssn_valid(m.group(1), m.group(3), m.group(4)):
            yield m.start(1), m.end(4)


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})\d{2}(?= ?[A-Z0-9])")


def _ibans(text: str) -> Iterator[Span]:
    # Starts are zero-width-ish (4 characters), so an invalid code cannot swallow a valid IBAN after it.
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        need, end = length - 4, m.end()  # walk exactly `length` characters, single spaces allowed
        while need and end < len(text):
            ch = text[end]
            if ch == " " and end + 1 < len(text) and text[end + 1] != " " and text[end - 1] != " ":
                end += 1
                continue
            if not ("0" <= ch <= "9" or "A" <= ch <= "Z"):
                break
            need -= 1
            end += 1
        if need or (end < len(text) and text[end].isalnum()):
            continue
        if iban_valid(text[m.start():end]):
            yield m.start(), end


_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?!\w|\.\d|-[A-Za-z])"
)
# Dotted quads that are version, build or section numbers, not addresses.
_NOT_AN_ADDRESS = re.compile(
    r"(?i)\b(?:version|ver|v|release|rel|build|firmware|fw|rev|revision|patch|kernel|sdk|driver|"
    r"section|sec|chapter|figure|fig|table|clause|article|art|§|oid)\.?\s*[:=#]?\s*$"
)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")


def _ips(text: str) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        if not _NOT_AN_ADDRESS.search(text[max(0, m.start() - 24):m.start()]):
            yield m.span()
    for m in _IPV6.finditer(text):
        value = m.group(0)
        # `Foo::Bar` parses as IPv6 too: an address written in text has at least one digit
        if ("::" not in value and value.count(":") != 7) or not any(ch.isdigit() for ch in value):
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield m.span()


# `pytest_genai.sanitize` skips detection for text with no digit, '@' or '<', none of AKIA, ASIA, eyJ, -----BEGIN,
# earer, EARER, none of `pii_secrets.CREDENTIAL_WORDS` in any case and no `OBFUSCATED_HINT`: every finding (and
# placeholder) holds one of these; keep that true for a new detector.
DETECTORS: dict[str, Callable[[str], Iterator[Span]]] = {  # PHONE runs afterwards: `phones`, see `pii.detect`
    "EMAIL": _emails, "CARD": _cards, "SSN": _ssns, "IBAN": _ibans, "IP": _ips, "SECRET": secrets,
}
