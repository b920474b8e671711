"""PII/secret detectors on hand-checked examples, checksums, overlaps, and the redaction contract:
placeholders are stable, detected as their type, and `redact` is idempotent."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections import Counter, namedtuple
from pathlib import Path

import pytest

from pytest_genai.safety.pii import PII_TYPES, Finding, detect, is_placeholder, placeholder, redact, redact_obj
from pytest_genai.safety.pii_detectors import card_network_known, iban_valid, luhn_valid, ssn_valid
from pytest_genai.safety.pii_secrets import SECRET_KINDS, secret_kind

DATA = Path(__file__).resolve().parents[1] / "pytest_genai" / "safety" / "data" / "pii_labelled.jsonl"


def _types(text: str) -> list[str]:
    return [f.type for f in detect(text)]


def _values(text: str, type_: str) -> list[str]:
    return [f.value for f in detect(text) if f.type == type_]


# ----------------------------------------------------------------------------- positives

@pytest.mark.parametrize(("text", "type_", "value"), [
    ("Write to jane.doe@example.com today.", "EMAIL", "jane.doe@example.com"),
    ("Reply-To: <no-reply+x@mail.example.co.uk>", "EMAIL", "no-reply+x@mail.example.co.uk"),
    ("Call +1 (415) 555-0132 now.", "PHONE", "+1 (415) 555-0132"),
    ("My number is 212-555-0147, text anytime.", "PHONE", "212-555-0147"),
    ("The London office is on +44 20 7946 0958.", "PHONE", "+44 20 7946 0958"),
    ("UK mobile 07700 900123 is on call.", "PHONE", "07700 900123"),
    ("Le standard: 01 23 45 67 89.", "PHONE", "01 23 45 67 89"),
    ("Berlin 030/12345678", "PHONE", "030/12345678"),
    ("WhatsApp: +4915112345678", "PHONE", "+4915112345678"),
    ("Call me on 555-0134 after lunch.", "PHONE", "555-0134"),
    ("Card 4111 1111 1111 1111 exp 12/29", "CARD", "4111 1111 1111 1111"),
    ("Card 4111 1111 1111 1111 12/29", "CARD", "4111 1111 1111 1111"),
    ("pay 4242-4242-4242-4242.", "CARD", "4242-4242-4242-4242"),
    ("Amex 3782 822463 10005 declined", "CARD", "3782 822463 10005"),
    ("mc 5555555555554444", "CARD", "5555555555554444"),
    ("SSN: 536-22-1947.", "SSN", "536-22-1947"),
    ("SSN 289557613 (no dashes)", "SSN", "289557613"),
    ("social security number 512 44 3021", "SSN", "512 44 3021"),
    ("IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("to GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
    ("Zahlung an CH93 0076 2011 6238 5295 7 bis Freitag.", "IBAN", "CH93 0076 2011 6238 5295 7"),
    ("server 192.168.1.10:8080", "IP", "192.168.1.10"),
    ("allow 172.16.0.0/12", "IP", "172.16.0.0"),
    ("client 2001:db8::8a2e:370:7334.", "IP", "2001:db8::8a2e:370:7334"),
    ("loopback ::1 only", "IP", "::1"),
    ("key sk-proj-4fJx9EXAMPLEkeyDoNotUse0123456789abcd here", "SECRET", "sk-proj-4fJx9EXAMPLEkeyDoNotUse0123456789abcd"),
    ("legacy sk-T3stKey0123456789abcdefABCDEF", "SECRET", "sk-T3stKey0123456789abcdefABCDEF"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("temp ASIA2BCDEFGH3JKLMNOP", "SECRET", "ASIA2BCDEFGH3JKLMNOP"),
    ("export GITHUB_TOKEN=ghp_aB3dE5gH7jK9mN1pQ3rS5tU7vW9xY1zA3cE5", "SECRET", "ghp_aB3dE5gH7jK9mN1pQ3rS5tU7vW9xY1zA3cE5"),
])
def test_positive(text: str, type_: str, value: str) -> None:
    assert _values(text, type_) == [value]
    f = next(f for f in detect(text) if f.type == type_)
    assert text[f.start:f.end] == f.value


def test_jwt_and_pem_blocks() -> None:
    jwt = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
           "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
    assert _values(f"Authorization: Bearer {jwt}", "SECRET") == [jwt]
    assert _values("header only eyJhbGciOiJIUzI1NiJ9 here", "SECRET") == []
    assert _values("eyJub3Rqc29u.eyJzdWIiOiIxIn0.abc", "SECRET") == []  # the header must decode to a JSON object
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234abcd\nABCDEFGH12345678\n-----END RSA PRIVATE KEY-----"
    assert _values(f"the key:\n{pem}\nkeep it safe", "SECRET") == [pem]
    truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n(truncated)"
    assert _values(truncated, "SECRET") == ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"]
    assert _types("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----") == []


# ----------------------------------------------------------------------------- near misses

@pytest.mark.parametrize("text", [
    # e-mail look-alikes
    "Use the @pytest.fixture decorator.", "john@example has no TLD", "jane.doe@@example.com", "jane..doe@example..com",
    "npm install lodash@4.17.21", "logo@2x.png", "git@github.com:example-org/widgets.git",
    # years, dates, versions, short runs, ids
    "founded in 2009", "Invoice date 2023-01-15", "Born on 15/01/1990", "released 01.02.2025",
    "version 10.0.19045", "Python 3.11.7", "Order number 100234", "ISBN 978-3-16-148410-0", "ISBN-10 0-306-40615-2",
    "score 3-1", "$1,234,567", "48.8566, 2.3522", "port 8080", "+12 degrees", "09:30-11:00",
    # cards: Luhn fails, unknown network, wrong length for the network
    "4111 1111 1111 1112", "1234 5678 9012 3456", "IMEI 490154203237518", "ISBN 9780306406157", "4111 1111 1111",
    # SSNs: reserved areas, group 00, serial 0000
    "000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "123-45-67890",
    # IBANs: wrong check digits, truncated, unknown country, not a country with IBANs
    "DE88 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 3", "XX12 3456 7890 1234 5678 90", "US12 3456 7890 1234 5678",
    "Postcode SW1A 1AA", "NL91 ABNA 0417 1643 01",
    # IP look-alikes
    "Upgrade to version 1.2.3.4 today.", "v10.0.0.1", "999.1.1.1", "256.256.256.256", "section 4.2.1.3",
    "OID 1.3.6.1.4.1.311", "12:30:45", "MAC 00:1A:2B:3C:4D:5E", "std::vector", "Class::method", "Firmware 2.0.1.7-beta",
    # secret look-alikes
    "sk-learn pipelines", "task-force", "OPENAI_API_KEY=sk-your-key-here", 'api_key = "sk-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"',
    "AKIA1234", "AKIAXXXXXXXXXXXXXXXX", "the prefix ghp_", "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "550e8400-e29b-41d4-a716-446655440000",
])
def test_near_miss_not_flagged(text: str) -> None:
    assert detect(text) == []


# ----------------------------------------------------------------------------- checksums

def test_luhn() -> None:
    # 7992739871 + check digit 3: the textbook example
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("") and not luhn_valid("4111-1111")


def test_card_networks() -> None:
    assert card_network_known("4111111111111111") and card_network_known("4222222222222")  # Visa 16 and 13
    assert not card_network_known("490154203237518")  # 15 digits starting 4: an IMEI, no Visa is 15 long
    assert card_network_known("2223003122003222") and not card_network_known("2220003122003222")  # Mastercard 2-series range
    assert not card_network_known("1234567890123452")


def test_iban_mod97() -> None:
    # DE89 3704 0044 0532 0130 00: move 'DE89' to the end, letters to numbers (D=13, E=14):
    # 370400440532013000131489 mod 97 == 1
    assert int("370400440532013000131489") % 97 == 1
    assert iban_valid("DE89 3704 0044 0532 0130 00") and iban_valid("de89370400440532013000")
    assert not iban_valid("DE88 3704 0044 0532 0130 00")  # check digits
    assert not iban_valid("DE89 3704 0044 0532 0130 0")  # length for DE is 22
    assert not iban_valid("XX89 3704 0044 0532 0130 00")  # not an IBAN country
    assert iban_valid("NO9386011117947") and iban_valid("FR1420041010050500013M02606")


def test_ssn_rules() -> None:
    assert ssn_valid("536", "22", "1947")
    assert not ssn_valid("000", "22", "1947") and not ssn_valid("666", "22", "1947") and not ssn_valid("900", "22", "1947")
    assert not ssn_valid("536", "00", "1947") and not ssn_valid("536", "22", "0000")


# ----------------------------------------------------------------------------- overlaps and ordering

def test_overlap_keeps_longer_or_more_specific() -> None:
    # digits inside an address are part of the e-mail, not a phone
    assert _types("mail john.212-555-0147@example.com") == ["EMAIL"]
    # a leading + makes it a phone, not a 13-digit Visa that happens to pass Luhn
    assert luhn_valid("4915112345678")
    assert _types("+4915112345678") == ["PHONE"]
    # a private key block wins over whatever its body looks like
    assert _types("-----BEGIN PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLE\n-----END PRIVATE KEY-----") == ["SECRET"]
    # the tail of an IBAN-shaped code is not a phone number, valid or not
    assert _types("IBAN DE89 3704 0044 0532 0130 00") == ["IBAN"]
    assert _types("bad DE88 3704 0044 0532 0130 00") == []


def test_findings_sorted_disjoint_and_slices() -> None:
    text = ("Jane <jane@example.org>, +44 20 7946 0958, card 4111-1111-1111-1111, SSN 536-22-1947, "
            "IBAN GB82 WEST 1234 5698 7654 32, from 10.0.0.5, key AKIAIOSFODNN7EXAMPLE")
    found = detect(text)
    assert [f.type for f in found] == ["EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET"]
    assert all(a.end <= b.start for a, b in zip(found, found[1:]))
    assert all(text[f.start:f.end] == f.value for f in found)
    assert isinstance(found[0], Finding)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].type = "PHONE"  # type: ignore[misc]  # frozen


def test_types_filter_is_a_view() -> None:
    text = "a@b.com 4111 1111 1111 1111 020 7946 0958 10.0.0.1"
    everything = detect(text)
    for t in PII_TYPES:
        assert detect(text, [t]) == [f for f in everything if f.type == t]
    assert [f.type for f in detect(text, {"CARD", "PHONE"})] == ["CARD", "PHONE"]
    with pytest.raises(ValueError, match="unknown PII type"):
        detect(text, ["CREDIT_CARD"])


def test_neighbour_of_a_finding_is_judged_as_after_redaction() -> None:
    # the second number touches the first: once the first is a placeholder, the second stands alone
    text = "Tel: +1-202-555-0183+44 20 7946 0958"
    assert _types(text) == ["PHONE", "PHONE"]
    assert Counter(_types(redact(text))) == Counter(_types(text))


# ----------------------------------------------------------------------------- redaction

_PLACEHOLDER_RE = re.compile(r"<([A-Z]+):([0-9a-f]{12})>")


def test_placeholder_format_and_stability() -> None:
    value = "jane.doe@example.com"
    # hashed from the SQuAD-normalised value (lower-case, no punctuation, no articles, one space)
    expected = f"<EMAIL:{hashlib.sha256(b'janedoeexamplecom').hexdigest()[:12]}>"
    assert placeholder("EMAIL", value) == expected and _PLACEHOLDER_RE.fullmatch(expected)
    text = f"from {value} to {value} cc other@example.com"
    out = redact(text)
    assert out == f"from {expected} to {expected} cc {placeholder('EMAIL', 'other@example.com')}"
    assert redact(text) == out  # deterministic across calls (and processes: no salt)
    assert placeholder("EMAIL", "other@example.com") != expected
    assert placeholder("EMAIL", "Jane.Doe@Example.COM") == expected  # equal under SQuAD normalisation
    assert is_placeholder(expected) and not is_placeholder("<EMAIL:xyz>") and not is_placeholder("<NAME:1a2b3c4d5e6f>")
    assert not is_placeholder("<EMAIL:1a2b3c>")  # the 6-hex form of earlier releases is too short to be one
    with pytest.raises(ValueError):
        placeholder("NAME", value)


def test_keyed_placeholder_is_hmac() -> None:
    key = b"run-secret"
    digest = hmac.new(key, b"536221947", hashlib.sha256).hexdigest()[:12]  # normalised: dashes dropped
    assert redact("SSN 536-22-1947", key=key) == f"SSN <SSN:{digest}>"
    assert redact("SSN 536-22-1947", key=key) != redact("SSN 536-22-1947")


def test_placeholders_are_detected_as_their_type() -> None:
    for t in PII_TYPES:
        ph = placeholder(t, "x")
        assert detect(f"see {ph}.") == [Finding(t, 4, 4 + len(ph), ph)]
        assert detect(f"see {ph}.", [t]) and not detect(f"see {ph}.", [o for o in PII_TYPES if o != t])


def test_redact_idempotent_and_counts_preserved_on_labelled_sample() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        t = row["text"]
        r = redact(t)
        assert redact(r) == r, t
        assert Counter(f.type for f in detect(r)) == Counter(f.type for f in detect(t)), t
        assert len(detect(r)) == len(detect(t))
        for f in detect(t):
            assert f.value not in r or is_placeholder(f.value), (t, f)


def test_redact_only_selected_types() -> None:
    text = "a@b.com and 10.0.0.1"
    out = redact(text, ["IP"])
    assert out.startswith("a@b.com and <IP:") and redact(out, ["IP"]) == out
    assert Counter(f.type for f in detect(out)) == Counter({"EMAIL": 1, "IP": 1})


def test_redact_leaves_clean_text_alone() -> None:
    for text in ["", "The capital of France is Paris.", "version 1.2.3.4 in 2023-01-15"]:
        assert redact(text) == text


def test_redact_obj_walks_containers() -> None:
    Pair = namedtuple("Pair", "question answer")
    obj = {
        "id": "case-1",
        "answer": "Call +44 20 7946 0958",
        "contexts": ["mail a@example.com", ("10.0.0.1", 42)],
        "tags": {"ok", "sk-proj-4fJx9EXAMPLEkeyDoNotUse0123456789abcd"},
        "pair": Pair("who?", "jane@example.org"),
        "n": 4111111111111111,
        "none": None,
        "jane@example.org": "keys are field names and stay",
    }
    out = redact_obj(obj)
    assert out["id"] == "case-1" and out["n"] == 4111111111111111 and out["none"] is None
    assert out["answer"] == "Call " + placeholder("PHONE", "+44 20 7946 0958")
    assert out["contexts"] == ["mail " + placeholder("EMAIL", "a@example.com"), (placeholder("IP", "10.0.0.1"), 42)]
    assert isinstance(out["contexts"][1], tuple)
    assert out["tags"] == {"ok", placeholder("SECRET", "sk-proj-4fJx9EXAMPLEkeyDoNotUse0123456789abcd")}
    assert isinstance(out["pair"], Pair) and out["pair"].answer == placeholder("EMAIL", "jane@example.org")
    assert "jane@example.org" in out
    assert obj["answer"] == "Call +44 20 7946 0958"  # the input is not modified
    assert redact_obj(out) == out
    assert redact_obj(obj, ["IP"])["answer"] == obj["answer"]
    with pytest.raises(ValueError):
        redact_obj(obj, ["NAME"])


# ----------------------------------------------------------------------------- the labelled sample

def test_labelled_sample_shape_and_quality_floor() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 220
    assert all(set(r) - {"kinds"} == {"text", "labels"} and set(r["labels"]) <= set(PII_TYPES) for r in rows)
    # a SECRET row names its kinds (the benchmark's per-kind table), no other row has any
    assert all(("kinds" in r) == ("SECRET" in r["labels"]) and set(r.get("kinds", ())) <= set(SECRET_KINDS)
               and len(r.get("kinds", ())) >= ("SECRET" in r["labels"]) for r in rows)
    assert sum(1 for r in rows if not r["labels"]) >= 40
    tp, fp, fn = Counter(), Counter(), Counter()
    for r in rows:
        gold, got = set(r["labels"]), {f.type for f in detect(r["text"])}
        for t in PII_TYPES:
            tp[t] += t in gold and t in got
            fp[t] += t in got and t not in gold
            fn[t] += t in gold and t not in got
    for t in PII_TYPES:
        assert tp[t] + fn[t] >= 10, t  # every type has positives
        # a regression floor well under the measured numbers (benchmarks/pii_detectors.md)
        assert tp[t] / (tp[t] + fp[t]) >= 0.9 and tp[t] / (tp[t] + fn[t]) >= 0.85, t
    for kind in SECRET_KINDS:  # the same per kind of secret, each with 5 positives at least
        gold = [r for r in rows if kind in r.get("kinds", ())]
        found = [r for r in rows if kind in {secret_kind(r["text"], f.start, f.end) for f in detect(r["text"])}]
        hits = sum(r in found for r in gold)
        assert len(gold) >= 5 and hits / len(found) >= 0.85 and hits / len(gold) >= 0.85, kind
