"""The one sanitizer: keyed 12-hex placeholders from normalised values (EM survives redaction),
secrets of any length, URL and lock-line credentials, dict keys, exceptions, and idempotence."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import pickle
import re
from pathlib import Path

import pytest

from pytest_genai.config import ConfigError, load_config
from pytest_genai.metrics.text import em_f1
from pytest_genai.safety.pii import detect, placeholder
from pytest_genai.sanitize import Sanitizer

KEY = b"k3y-for-tests"
KEYED = Sanitizer(redact_pii=True, key=KEY, secrets=())
UNKEYED = Sanitizer(redact_pii=True, key=None, secrets=())
EMAIL = "John.Doe@Example.com"


def test_keyed_and_unkeyed_placeholders_differ_and_have_12_hex() -> None:
    keyed, unkeyed = KEYED.text(f"mail {EMAIL}"), UNKEYED.text(f"mail {EMAIL}")
    assert keyed != unkeyed and EMAIL not in keyed + unkeyed
    for out, key in ((keyed, KEY), (unkeyed, None)):
        m = re.fullmatch(r"mail <EMAIL:([0-9a-f]{12,})>", out)
        assert m, out
        assert out == f"mail {placeholder('EMAIL', EMAIL, key)}"
    normalised = b"johndoeexamplecom"
    assert keyed.endswith(hmac.new(KEY, normalised, hashlib.sha256).hexdigest()[:12] + ">")
    assert unkeyed.endswith(hashlib.sha256(normalised).hexdigest()[:12] + ">")
    assert KEYED.keyed and not UNKEYED.keyed


def test_values_equal_after_normalisation_share_a_placeholder() -> None:
    assert KEYED.text(EMAIL) == KEYED.text("john.doe@example.com") == KEYED.text("JOHN.DOE@EXAMPLE.COM")
    assert KEYED.text("john.doe@example.com") != KEYED.text("jane.doe@example.com")


@pytest.mark.parametrize(("gold", "answer"), [
    ("John.Doe@Example.com", "john.doe@example.com"),
    ("Write to John.Doe@Example.com.", "write   to the john.doe@example.com"),
    ("SSN 536-22-1947", "ssn: 536-22-1947!"),
])
def test_em_is_1_after_redaction_when_it_was_before(gold: str, answer: str) -> None:
    assert em_f1([gold], answer) == (1.0, 1.0)
    for san in (KEYED, UNKEYED):
        red_gold, red_answer = san.text(gold), san.text(answer)
        assert red_gold != gold and red_answer != answer  # the PII really was replaced
        assert em_f1([red_gold], red_answer) == (1.0, 1.0), (red_gold, red_answer)


def test_em_stays_0_for_different_values() -> None:
    gold, answer = "jane.doe@example.com", "john.doe@example.com"
    assert em_f1([KEYED.text(gold)], KEYED.text(answer))[0] == 0.0


def test_short_secret_replaced_as_a_token_only() -> None:
    san = Sanitizer(redact_pii=True, key=None, secrets=("xyz",))
    assert san.text("key xyz rejected") == "key *** rejected"
    assert san.text("xyzzy is a word") == "xyzzy is a word"
    assert san.text("token=xyz; (xyz)") == "token=***; (***)"
    assert san.text("axyz xyz1 _xyz") == "axyz xyz1 _***"  # `_` is not a letter or digit


def test_long_secret_replaced_everywhere_and_empty_ignored() -> None:
    san = Sanitizer(redact_pii=True, key=None, secrets=("", "s3cretValue42"))
    assert san.text("key s3cretValue42 and xs3cretValue42x") == "key *** and x***x"  # after `Bearer`: a SECRET
    assert san.text("nothing here") == "nothing here"


def test_secrets_and_url_credentials_redacted_even_with_redact_off() -> None:
    san = Sanitizer(redact_pii=False, key=None, secrets=("abc",))
    out = san.text("abc from jane@example.org via https://user:pw@host.example/x")
    assert out == "*** from jane@example.org via https://***@host.example/x"


def test_secret_cut_by_a_pii_finding_is_masked_whole() -> None:
    secret = "hunter2 jane@example.org tail"
    san = Sanitizer(redact_pii=True, key=None, secrets=(secret,))
    out = san.text(f"password: {secret}")
    assert out == "password: ***" and "hunter2" not in out and "tail" not in out


def test_a_configured_key_shaped_like_a_key_still_counts_as_a_secret_flag() -> None:
    key = "sk-proj-4fJx9EXAMPLEkeyDoNotUse0123456789abcd"
    out = Sanitizer(redact_pii=True, key=None, secrets=(key,)).text(f"the key is {key}")
    assert key not in out and [f.type for f in detect(out)] == ["SECRET"]


@pytest.mark.parametrize(("raw", "clean"), [
    ("https://user:pass@host.example/simple", "https://***@host.example/simple"),
    ("torch @ https://alice:t0ken@pkgs.example/torch-2.13.0.whl#sha256=ab12",
     "torch @ https://***@pkgs.example/torch-2.13.0.whl#sha256=ab12"),
    ("--extra-index-url https://u:p@h.example/simple", "--extra-index-url https://***@h.example/simple"),
    ("--index-url=https://__token__:pypi-AgEI@upload.example/", "--index-url=https://***@upload.example/"),
    ("mylib @ git+https://ghp_Abc123tokenXyz@github.com/org/mylib@v1", "mylib @ git+https://***@github.com/org/mylib@v1"),
    ("pkg @ https://files.example/pkg.whl?token=abc123&v=2", "pkg @ https://files.example/pkg.whl?token=***&v=2"),
    ("mylib @ git+ssh://git@github.com/org/mylib", "mylib @ git+ssh://git@github.com/org/mylib"),
    ("requests==2.32.3 --hash=sha256:0123abcd", "requests==2.32.3 --hash=sha256:0123abcd"),
])
def test_url_and_lock_line_credentials(raw: str, clean: str) -> None:
    san = Sanitizer(redact_pii=False, key=None, secrets=())
    assert san.text(raw) == clean
    assert san.text(clean) == clean


def test_obj_redacts_dict_keys_values_and_containers() -> None:
    san = Sanitizer(redact_pii=True, key=KEY, secrets=("xyz",))
    obj = {EMAIL: {"retrieved": ["mail a@example.com", ("xyz", 42)]}, "n": 3.5, "none": None, "flag": True}
    out = san.obj(obj)
    assert set(out) == {san.text(EMAIL), "n", "none", "flag"}
    inner = out[san.text(EMAIL)]["retrieved"]
    assert inner == [san.text("mail a@example.com"), ("***", 42)] and isinstance(inner[1], tuple)
    assert out["n"] == 3.5 and out["none"] is None and out["flag"] is True
    assert "example.com" not in repr(out) and "xyz" not in repr(out)
    assert obj[EMAIL]["retrieved"][1] == ("xyz", 42)  # the input is not modified
    assert san.obj(out) == out


def test_idempotent_on_mixed_text() -> None:
    san = Sanitizer(redact_pii=True, key=KEY, secrets=("xyz", "s3cretValue42"))
    text = (f"{EMAIL} called +44 20 7946 0958 with xyz and s3cretValue42 from 10.0.0.1, "
            "card 4111 1111 1111 1111, pip --extra-index-url https://u:p@h.example/simple")
    once = san.text(text)
    assert san.text(once) == once
    for raw in (EMAIL, "7946 0958", "xyz", "s3cretValue42", "10.0.0.1", "4111", "u:p@"):
        assert raw not in once, raw
    assert san.text(None) is None and san.text("") == ""


def test_exception_is_sanitized() -> None:
    san = Sanitizer(redact_pii=True, key=KEY, secrets=("xyz",))

    def build() -> None:
        raise ValueError(f"factory failed for {EMAIL} with key xyz")

    try:
        try:
            build()
        except ValueError as inner:
            raise RuntimeError("pipeline build failed at https://bob:pw@host.example/") from inner
    except RuntimeError as exc:
        out = san.exception(exc)
    assert "ValueError: factory failed for <EMAIL:" in out and "with key ***" in out
    assert "RuntimeError: pipeline build failed at https://***@host.example/" in out
    assert "Traceback (most recent call last)" in out and "in build" in out
    assert EMAIL not in out and "bob:pw" not in out and " xyz" not in out


def test_exception_keeps_only_the_last_frames() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise KeyError("jane@example.org")
        deep(n - 1)

    try:
        deep(20)
    except KeyError as exc:
        out = UNKEYED.exception(exc, limit=3)
    assert out.count("in deep") == 3 and "jane@example.org" not in out and "<EMAIL:" in out


def test_digest_is_full_length_keyed_hash_of_raw_bytes() -> None:
    data = b"John.Doe@Example.com"
    assert KEYED.digest(data) == hmac.new(KEY, data, hashlib.sha256).hexdigest()
    assert UNKEYED.digest(data) == hashlib.sha256(data).hexdigest()
    assert len(KEYED.digest(data)) == 64 and KEYED.digest(data) != KEYED.digest(b"john.doe@example.com")


def test_plain_hashable_picklable() -> None:
    san = Sanitizer(redact_pii=True, key=KEY, secrets=("xyz",), types=("EMAIL",))
    again = pickle.loads(pickle.dumps(san))
    assert again == san and hash(again) == hash(san)
    assert san.text("a@example.com at 10.0.0.1") == f"{placeholder('EMAIL', 'a@example.com', KEY)} at 10.0.0.1"


BASE = """\
version: 1
seed: 3
pipeline: builtin:llm
llm:
  api_key: ${MY_KEY}
prompt:
  id: qa
  version: 1
eval:
  set: evals/qa.jsonl
"""


def _config(tmp_path: Path, text: str, environ: dict[str, str]):  # type: ignore[no-untyped-def]
    path = tmp_path / "genai.yaml"
    path.write_text(text)
    return load_config(path, environ=environ)


def test_from_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, BASE + "safety:\n  redact_key: ${REDACT_KEY}\n", {"MY_KEY": "ab", "REDACT_KEY": "rk-123456789"})
    san = Sanitizer.from_config(cfg)
    assert san.redact_pii and san.keyed and san.key == b"rk-123456789" and san.types is None
    assert set(san.secrets) == {"ab", "rk-123456789"}
    assert san.text("ab rk-123456789 abc") == "*** *** abc"

    off = Sanitizer.from_config(_config(tmp_path, BASE + "safety:\n  redact: false\n", {"MY_KEY": "ab"}))
    assert not off.redact_pii and not off.keyed and off.text("ab at jane@example.org") == "*** at jane@example.org"


def test_literal_redact_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _config(tmp_path, BASE + "safety:\n  redact_key: my-literal-key\n", {"MY_KEY": "ab"})
    msg = str(exc.value)
    assert "safety.redact_key: must be an environment reference" in msg and "my-literal-key" not in msg


def test_empty_redact_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="safety.redact_key"):  # at load (the config names it), or when built
        Sanitizer.from_config(_config(tmp_path, BASE + "safety:\n  redact_key: ${REDACT_KEY}\n",
                                      {"MY_KEY": "ab", "REDACT_KEY": ""}))


def test_idempotent_on_the_labelled_pii_sample() -> None:
    import json

    data = Path(__file__).resolve().parents[1] / "pytest_genai" / "safety" / "data" / "pii_labelled.jsonl"
    san = Sanitizer(redact_pii=True, key=KEY, secrets=("xyz", "s3cretValue42"))
    for line in data.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        once = san.text(text)
        assert san.text(once) == once, text
        for f in detect(text):
            if f.type == "IP" and ipaddress.ip_address(f.value).is_loopback:
                assert f.value in once, (text, f)  # loopback is not PII: kept readable
                continue
            assert f.value not in once or f.value.startswith("<"), (text, f)


def test_fast_path_never_skips_a_finding() -> None:
    import json

    from pytest_genai.sanitize import _maybe_pii

    data = Path(__file__).resolve().parents[1] / "pytest_genai" / "safety" / "data" / "pii_labelled.jsonl"
    texts = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines()]
    texts += ["key AKIAABCDEFGHIJKLMNOP here", "The capital of France is Paris."]
    for text in texts:
        if detect(text):
            assert _maybe_pii(text), text
    assert UNKEYED.text("key AKIAABCDEFGHIJKLMNOP here").startswith("key <SECRET:")


@pytest.mark.parametrize("text", [
    "MLflow at http://127.0.0.1:5000 refused the connection",
    "MLflow at http://[::1]:5000/api refused the connection",
    "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded",
    "the stub listens on 127.8.9.10:8080 and http://localhost:5000",
])
def test_loopback_addresses_stay_readable(text: str) -> None:
    for san in (KEYED, UNKEYED):
        assert san.text(text) == text


@pytest.mark.parametrize("address", ["8.8.8.8", "10.0.0.7", "192.168.1.20", "2001:db8::5", "fe80::1ff:fe23:4567:890a"])
def test_other_addresses_are_still_redacted(address: str) -> None:
    out = KEYED.text(f"the client {address} asked")
    assert address not in out and out.startswith("the client <IP:"), out


@pytest.mark.parametrize("uri, host, other", [
    ("http://10.20.30.40:5000", "10.20.30.40", "10.20.30.41"),
    ("https://user:pw@10.20.30.40/mlflow", "10.20.30.40", "172.16.0.9"),
    ("http://[fd00::5]:5000", "fd00::5", "fd00::6"),
])
def test_the_configured_tracking_server_stays_readable(tmp_path: Path, uri: str, host: str, other: str) -> None:
    cfg = _config(tmp_path, BASE + f"tracking:\n  uri: {uri!r}\n", {"MY_KEY": "ab"})
    san = Sanitizer.from_config(cfg)
    assert san.hosts == (host,)
    text = f"ConnectionError: {host} refused; the peer {other} timed out"
    out = san.text(text)
    assert host in out and other not in out and "<IP:" in out, out
    bracketed = f"MLflow at http://[{host}]:5000 refused" if ":" in host else f"MLflow at http://{host}:5000 refused"
    assert san.text(bracketed) == bracketed
    assert pickle.loads(pickle.dumps(san)) == san


def test_a_hostname_tracking_uri_keeps_only_loopback(tmp_path: Path) -> None:
    san = Sanitizer.from_config(_config(tmp_path, BASE + "tracking:\n  uri: http://mlflow.internal:5000\n", {"MY_KEY": "ab"}))
    assert san.text("mlflow.internal:5000 via 127.0.0.1") == "mlflow.internal:5000 via 127.0.0.1"
    assert "10.1.1.1" not in san.text("resolved to 10.1.1.1")
    no_uri = Sanitizer.from_config(_config(tmp_path, BASE, {"MY_KEY": "ab"}))
    assert no_uri.hosts == () and "10.1.1.1" not in no_uri.text("10.1.1.1")


@pytest.mark.parametrize("redact", [True, False])
def test_a_lone_surrogate_becomes_u_fffd_so_the_text_can_be_written(redact: bool) -> None:
    san = Sanitizer(redact_pii=redact, key=None, secrets=())
    out = san.obj({"answer": "it is \ud800 here", "meta\udcff": ["\ud83d\ude00 a split pair", "café"]})
    assert out == {"answer": "it is \ufffd here", "meta\ufffd": ["\U0001f600 a split pair", "café"]}
    assert san.text(out["answer"]) == out["answer"]  # idempotent
    (out["answer"] + "".join(out) + "".join(out["meta\ufffd"])).encode("utf-8")  # no UnicodeEncodeError
