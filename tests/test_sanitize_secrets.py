"""The sanitizer's secret kinds, each checked (issue 24, "the sanitizer, measured"): GitHub, Slack, JWT, PEM blocks
(also JSON-escaped), `sk-` keys, obfuscated e-mails (`jane dot doe at example dot com`, `jane(at)example(dot)com`),
passwords of letters or digits only after `password:`, and random tokens next to key/secret/token/password; each
finding's kind; and what must stay readable: our own config hashes, commit SHAs, run ids, sha256 pins, UUIDs,
`sk-learn`, the words after "password" in prose. All values below are fake."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_genai import names
from pytest_genai.safety.pii import detect, placeholder
from pytest_genai.safety.pii_secrets import SECRET_KINDS, secret_kind
from pytest_genai.sanitize import Sanitizer, _maybe_pii

KEY = b"k3y-for-tests"
ON = Sanitizer(redact_pii=True, key=KEY, secrets=())
OFF = Sanitizer(redact_pii=False, key=KEY, secrets=())

GHP = "ghp_Vq3LrT8wZx1NcY6pK0mJ4sB7dF2hG9aE5uQi"
GHS = "ghs_GkRcI1RxuhNCoMHHM3PPNqK4C6L7OzxedHnE"
PAT = "github_pat_11ABCD2EFG0hIjKlMnOpQr_StUvWxYz0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTg4NDEiLCJhdWQiOiJ3ZWIifQ."
       "Zq4vX9kL2mN7pR1sT6uW3yA8bC5dE0fG4hJ9kM2nP7q")
PEM_BODY = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7Zq4vX9kL2mN7\n"
            "pR1sT6uW3yA8bC5dE0fG4hJ9kM2nP7qR3sT8uV1wX6yZ0aB5cD2eF7gH4iJ9kL0m")
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----"


def secret(value: str) -> str:
    return placeholder("SECRET", value, KEY)


def _masked(san: Sanitizer, text: str, raw: str) -> str:
    out = san.text(text)
    assert raw not in out and secret(raw) in out, (text, out)
    assert san.text(out) == out and _maybe_pii(text)  # idempotent; the fast path lets it through
    return out


def _kinds(text: str) -> list[tuple[str | None, str]]:
    return [(secret_kind(text, f.start, f.end), f.value) for f in detect(text) if f.type == "SECRET"]


# --------------------------------------------------------------------------- vendor shapes

@pytest.mark.parametrize(("text", "raw", "kind"), [
    (f"export GITHUB_TOKEN={GHP}", GHP, "GITHUB"),
    (f'{{"access_token": "{GHP.replace("ghp_", "ghu_")}"}}', GHP.replace("ghp_", "ghu_"), "GITHUB"),
    (f"GH_TOKEN: {PAT}", PAT, "GITHUB"),
    ("export SLACK_BOT_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
     "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "SLACK"),
    ("app_token: xapp-1-A0123456789-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
     "xapp-1-A0123456789-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9", "SLACK"),
    ("rotated xoxe.xoxp-1-Mi0yLTQ4ODE5NzQ1NjAtMTIz (refresh)", "xoxe.xoxp-1-Mi0yLTQ4ODE5NzQ1NjAtMTIz", "SLACK"),
    ("POST https://hooks.slack.com/services/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",
     "T0ABC1234/B0DEF5678/Zq4vX9kL2mN7pR1sT6uW3yA8", "SLACK"),
    (f"Cookie: session={JWT}; HttpOnly", JWT, "JWT"),
    (f"Authorization: Bearer {JWT}", JWT, "JWT"),  # a JWT after Bearer: the more specific kind
    ("Use sk-3fA9kQ2mZ8xW1pL7 for the sandbox only.", "sk-3fA9kQ2mZ8xW1pL7", "SK_KEY"),  # 16 characters
    ("api_key: sk-proj-3fA9kQ2mZ8xW1pL7", "sk-proj-3fA9kQ2mZ8xW1pL7", "SK_KEY"),
])
def test_vendor_shapes_are_masked_with_their_kind(text: str, raw: str, kind: str) -> None:
    out = _masked(ON, text, raw)
    assert OFF.text(text) == out  # a key is masked with redaction off too
    assert _kinds(text) == [(kind, raw)]


def test_a_token_as_url_user_info_is_a_github_token_not_an_email() -> None:
    text = f"git clone https://x-access-token:{GHS}@github.com/acme/infra.git"
    assert _kinds(text) == [("GITHUB", GHS)] and [f.type for f in detect(text)] == ["SECRET"]  # the guard blocks it
    assert ON.text(text) == OFF.text(text) == "git clone https://***@github.com/acme/infra.git"


def test_pem_blocks_spanning_lines_and_json_escaped() -> None:
    for text in (f"the key:\n{PEM}\nkeep it safe", "tls:\n  key: |\n    " + PEM.replace("\n", "\n    ") + "\n  x: 1",
                 '{"private_key": "' + PEM.replace("\n", "\\n") + '\\n"}'):
        out = ON.text(text)
        assert "-----BEGIN" not in out and "MIIEvQ" not in out and "pR1sT6uW" not in out, out
        assert [k for k, _ in _kinds(text)] == ["PEM"]
    # truncated before its END line, in a JSON dump: the base64 after each `\n` escape is the key's too
    truncated = '{"private_key": "-----BEGIN PRIVATE KEY-----\\n' + PEM_BODY.replace("\n", "\\n") + '\\n... (cut)'
    out = ON.text(truncated)
    assert "MIIEvQ" not in out and "pR1sT6uW" not in out and out.endswith("\\n... (cut)"), out


# --------------------------------------------------------------------------- obfuscated e-mails

@pytest.mark.parametrize("text", [
    "Write to jane dot doe at example dot com for the slides.",
    "Contact: jane.doe(at)example(dot)com",
    "jane.doe [at] example [dot] com",
    "Maintainer: <jane.doe [at] example.com>",
    "reach JANE DOT DOE AT EXAMPLE DOT COM if the build breaks",
    "mail jane.doe{at}example{dot}com",
    "jane.doe (at) example (dot) com",
])
def test_obfuscated_emails_get_the_plain_address_placeholder(text: str) -> None:
    plain = placeholder("EMAIL", "jane.doe@example.com", KEY)
    out = ON.text(text)
    assert plain in out and "example" not in out.lower().replace(plain, ""), out
    assert ON.text(out) == out and _maybe_pii(text)  # no digit, '@' or '<' in most: the fast path still looks
    assert OFF.text(text) == text  # PII is kept with redaction off (a private store)


@pytest.mark.parametrize("text", [
    "Look at example dot com for the schedule.", "She works at Acme dot com.", "The dot at the end matters.",
    "values[at] = row.total", "We met at the cafe (at) noon, right at the dot.", "email me at home dot",
])
def test_obfuscated_email_look_alikes_stay(text: str) -> None:
    assert ON.text(text) == text and not [f for f in detect(text) if f.type == "EMAIL"]


def test_a_bare_at_skips_a_prose_word_and_finds_the_address_after_it() -> None:
    text = "email me at lee dot chen at example dot org"
    assert ON.text(text) == "email me at " + placeholder("EMAIL", "lee.chen@example.org", KEY)


# --------------------------------------------------------------------------- passwords and tokens near their name

@pytest.mark.parametrize(("text", "raw"), [
    ("database:\n  password: swordfish\n  host: db", "swordfish"),  # letters only, the line's end after it
    ("export DB_PASSWORD=12345678", "12345678"),  # digits only
    ('{"user": "app", "password": "swordfish"}', "swordfish"),  # quoted
    ("Server=sql01;User Id=svc;Password=swordfish;", "swordfish"),  # a connection string
    ("login?user=ana&password=swordfish&next=1", "swordfish"),
    ("passphrase: correcthorsebatterystaple", "correcthorsebatterystaple"),
])
def test_letters_or_digits_only_passwords_after_their_name(text: str, raw: str) -> None:
    _masked(ON, text, raw)
    _masked(OFF, text, raw)
    assert _kinds(text) == [("CREDENTIAL", raw)]
    assert ON.obj({"password": raw}) == {"password": secret(raw)}  # as a dict entry too


@pytest.mark.parametrize("text", [
    "Open the password reset page and choose a new password.", "Password: Enter your password below.",
    "login(user=name, password=userpass, retries=3)", "password: required", "password: null", 'password: "string"',
    "passwordless: enabled", "the password is swordfish in the film",  # prose: a word is not a password
])
def test_password_look_alikes_stay(text: str) -> None:
    assert ON.text(text) == text and not detect(text), detect(text)


@pytest.mark.parametrize(("text", "raw"), [
    ("My API key is Zx9QwErTyUiOpAsDfGhJkL1234 but it stopped working.", "Zx9QwErTyUiOpAsDfGhJkL1234"),
    ("The token is 8f7d6e5c4b3a29180716253443526170, keep it private.", "8f7d6e5c4b3a29180716253443526170"),
    ("Here is the secret for staging: q7Hk2_Lm9vX4-pR8sT1wZ6yB", "q7Hk2_Lm9vX4-pR8sT1wZ6yB"),
    ("I set the admin password to aa7lf!yPqv7 and mailed it.", "aa7lf!yPqv7"),
    ("Your new access key → `XnWWK3DzmmXZcGc8RGUSs93C` (shown once).", "XnWWK3DzmmXZcGc8RGUSs93C"),
    ("gpg --passphrase 'vhcrsv677zjkrn' -d backup.gpg", "vhcrsv677zjkrn"),
])
def test_random_tokens_next_to_a_credential_word(text: str, raw: str) -> None:
    _masked(ON, text, raw)
    _masked(OFF, text, raw)
    assert _kinds(text) == [("HIGH_ENTROPY", raw)]


# --------------------------------------------------------------------------- what stays readable

SHA1 = "9fceb02d0ae598e95dc970b74767f19372d61af8"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
RUN_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
UUID = "550e8400-e29b-41d4-a716-446655440000"


def test_our_hashes_commit_shas_run_ids_and_pins_stay_readable() -> None:
    """What the record, its tags and our own messages carry is not a secret, even beside the word key or token."""
    tags: dict[str, Any] = {
        names.TAG_GIT_COMMIT: SHA1, names.TAG_MLFLOW_GIT_COMMIT: SHA1, names.TAG_CONFIG_HASH: SHA256,
        names.TAG_PROMPT_HASH: SHA256, names.TAG_EVAL_SET_HASH: SHA256, names.TAG_MODEL_SHA256: SHA256,
        names.TAG_ENV_LOCK_HASH: SHA256, names.TAG_INDEX_FINGERPRINT: SHA256, names.TAG_BASELINE_RUN_ID: RUN_ID,
        names.TAG_PIPELINE_ARTIFACTS_HASH: SHA256, "rag.embed_model_sha256": SHA256, "request_id": RUN_ID,
        "key": SHA256, "cache_key": SHA256, "run_token": RUN_ID, "idempotency_key": UUID, "max_tokens": "1024",
    }
    assert ON.obj(tags) == tags and OFF.obj(tags) == tags
    for text in [
        f"replay: no recorded response for case 'paris': cache key {SHA256} is not in the response cache",
        f"cassette.jsonl:7: key {SHA256} is already on line 3",
        f"Merged in commit {SHA1} (key fix for the cache).",
        f"requests==2.32.3 --hash=sha256:{SHA256}",
        f"MLflow run {RUN_ID}: token counts in the table; idempotency key {UUID} reused",
        f"the key {SHA1} and the token {SHA256} are hashes",
        "pip install sk-learn, then read sk-learn-tutorial-2",
        "public key AAAAC3NzaC1lZDI1NTE5AAAAIGx9QwErTy8uIoPaSdFgHjKlZx2cV",
        "the page token eyJvZmZzZXQiOiA1MH0= returns the next page",
        "key: PKCS12PrivateKeyTypes | None; token model all-MiniLM-L6-v2, gpt-4o-mini-2024-07-18",
        "primary_key: customer_id, sort key created_at, partition key region_2024_eu",
    ]:
        assert ON.text(text) == text, (text, detect(text))


def test_every_kind_has_a_finder_and_a_finding_gets_one() -> None:
    text = (f"{PEM}\n{JWT} {GHP} xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx sk-3fA9kQ2mZ8xW1pL7 "
            "AKIAIOSFODNN7EXAMPLE aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY "
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc Bearer abcDEF123456ghiJKL Authorization: Basic dXNlcjpwYXNzd29yZA== "
            "password: swordfish\nmy api key is Zx9QwErTyUiOpAsDfGhJkL1234")
    assert [k for k, _ in _kinds(text)] == list(SECRET_KINDS)
    assert secret_kind("no secret here", 0, 2) is None
    out = ON.text(text)
    assert out.count("<SECRET:") == len(SECRET_KINDS) and "swordfish" not in out
