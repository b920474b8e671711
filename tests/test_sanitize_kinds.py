"""Secret and PII kinds the sanitizer once missed: AWS secret access keys, `Bearer` tokens, URL-encoded e-mails,
short `sk-` keys and credential assignments (`api_key=`, `OPENAI_API_KEY=`, `password:`, `Authorization:`,
`x-api-key:`), in text and inside `obj()`; secrets masked even with `safety.redact: false`; the look-alikes kept."""

from __future__ import annotations

from typing import Any

from pytest_genai.safety.pii import detect, placeholder
from pytest_genai.sanitize import Sanitizer, _maybe_pii

KEY = b"k3y-for-tests"
ON = Sanitizer(redact_pii=True, key=KEY, secrets=())
OFF = Sanitizer(redact_pii=False, key=KEY, secrets=())

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "abcDEF123.ghi-JKL_456~mno+PQR/789="
SHORT_KEYS = ("sk-abcdefghij012345", "sk-proj-abcdefghij012345", "sk-ant-abcdefghij012345",
              "sk-ant-api03-abcdefghij012345", "sk-Zq8vK3pW0rT5nY2u")


def secret(value: str) -> str:
    return placeholder("SECRET", value, KEY)


def _check(san: Sanitizer, text: str, expected: str, raw: str) -> None:
    out = san.text(text)
    assert out == expected and raw not in out, out
    assert san.text(out) == out  # idempotent
    assert _maybe_pii(text)  # the fast path does not skip it


def test_aws_secret_access_keys_after_their_name_or_key_id() -> None:
    masked = secret(AWS_SECRET)
    for text, expected in [
        (f"aws_secret_access_key = {AWS_SECRET}", f"aws_secret_access_key = {masked}"),
        (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", f"export AWS_SECRET_ACCESS_KEY={masked}"),
        (f'{{"AccessKeyId": "{AWS_ID}", "SecretAccessKey": "{AWS_SECRET}"}}',
         f'{{"AccessKeyId": "{secret(AWS_ID)}", "SecretAccessKey": "{masked}"}}'),
        (f"secretAccessKey: '{AWS_SECRET}'", f"secretAccessKey: '{masked}'"),
        (f"aws configure set aws_secret_access_key {AWS_SECRET}", f"aws configure set aws_secret_access_key {masked}"),
        (f"aws_secret_key => {AWS_SECRET}", f"aws_secret_key => {masked}"),
        (f"Access key ID,Secret access key\n{AWS_ID},{AWS_SECRET}",
         f"Access key ID,Secret access key\n{secret(AWS_ID)},{masked}"),
        (f"creds {AWS_ID}:{AWS_SECRET}", f"creds {secret(AWS_ID)}:{masked}"),
    ]:
        _check(ON, text, expected, AWS_SECRET)


def test_bearer_tokens_keep_the_word() -> None:
    for text, raw in [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"-H 'authorization: bearer {TOKEN}'", TOKEN),
        (f"AUTHORIZATION: BEARER {TOKEN}.", TOKEN),  # the full stop is prose
        ("Bearer AbCdEfGhIjKlMnOp", "AbCdEfGhIjKlMnOp"),  # no digit: mixed case
        ("curl -H Authorization:Bearer%20tok3n-abcdef", "tok3n-abcdef"),
    ]:
        _check(ON, text, text.replace(raw, secret(raw)), raw)


def test_url_encoded_emails_get_the_plain_address_placeholder() -> None:
    plain = placeholder("EMAIL", "jane.doe@example.com", KEY)
    for text, expected in [
        ("GET /users?email=jane.doe%40example.com&page=2", f"GET /users?email={plain}&page=2"),
        ("twice encoded: jane.doe%2540example.com", f"twice encoded: {plain}"),
        ("next=%2Finvite%3Fto%3Djane.doe%40example.com%26x%3D1", f"next=%2Finvite%3Fto%3D{plain}%26x%3D1"),
    ]:
        _check(ON, text, expected, "jane.doe")
    assert ON.text("jane.doe@example.com") == ON.text("jane.doe%40example.com") == plain
    assert ON.text("icon%402x.png and 50%40 off") == "icon%402x.png and 50%40 off"  # a file name, a number
    assert OFF.text("mail jane.doe%40example.com") == "mail jane.doe%40example.com"  # PII stays with redact off


def test_short_sk_keys_and_their_look_alikes() -> None:
    for key in SHORT_KEYS:
        _check(ON, f"client = OpenAI(api_key='{key}')", f"client = OpenAI(api_key='{secret(key)}')", key)
    key = SHORT_KEYS[0]
    text = (f"pip install sk-learn for the task-based demo (see sk-learn-tutorial-2, sk-abcdefghijklmnop, sk-1234) "
            f"with key {key}")
    expected = ("pip install sk-learn for the task-based demo (see sk-learn-tutorial-2, sk-abcdefghijklmnop, sk-1234) "
                f"with key {secret(key)}")
    _check(ON, text, expected, key)


def test_bearer_and_aws_look_alikes_stay() -> None:
    sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # 40 characters, but no AWS name before it
    text = (f"The bearer authentication scheme: send Bearer <token> or Bearer YOUR_TOKEN_HERE, never bearer bonds; "
            f"commit {sha1}. Real: Bearer {TOKEN}")
    expected = text.replace(TOKEN, secret(TOKEN))
    _check(ON, text, expected, TOKEN)


def test_obj_masks_every_kind_in_keys_values_and_containers() -> None:
    key = SHORT_KEYS[0]
    value: dict[str, Any] = {
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "env": [f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", ("OPENAI_API_KEY", key)],
        "url": "https://api.example.com/v1?email=jane.doe%40example.com",
        f"Bearer {TOKEN}": {"n": 3, "ok": True},
    }
    out = ON.obj(value)
    dump = repr(out)
    for raw in (TOKEN, AWS_SECRET, key, "jane.doe"):
        assert raw not in dump, raw
    assert out["headers"]["Authorization"] == f"Bearer {secret(TOKEN)}"
    assert out["env"] == [f"AWS_SECRET_ACCESS_KEY={secret(AWS_SECRET)}", ("OPENAI_API_KEY", secret(key))]
    assert out["url"] == "https://api.example.com/v1?email=" + placeholder("EMAIL", "jane.doe@example.com", KEY)
    assert out[f"Bearer {secret(TOKEN)}"] == {"n": 3, "ok": True}
    assert ON.obj(out) == out and value["env"][1] == ("OPENAI_API_KEY", key)  # idempotent; the input untouched


def test_secrets_are_masked_even_with_redact_off() -> None:
    key = SHORT_KEYS[0]
    text = f"jane@example.org sent Bearer {TOKEN}, aws_secret_access_key={AWS_SECRET} and {key}"
    expected = (f"jane@example.org sent Bearer {secret(TOKEN)}, aws_secret_access_key={secret(AWS_SECRET)} "
                f"and {secret(key)}")
    _check(OFF, text, expected, TOKEN)
    out = OFF.obj({"a": [text], "b": OFF.text(text)})
    assert out == {"a": [expected], "b": expected}
    for raw in (TOKEN, AWS_SECRET, key):
        assert raw not in repr(out)
    assert "jane@example.org" in expected  # PII is kept: a private store
    # with types that leave SECRET out, keys are still placeholders
    only_email = Sanitizer(redact_pii=True, key=KEY, secrets=(), types=("EMAIL",))
    assert only_email.text(f"{key} from 10.0.0.1") == f"{secret(key)} from 10.0.0.1"


def test_detectors_flag_each_kind_as_its_type() -> None:
    assert [(f.type, f.value) for f in detect(f"Bearer {TOKEN} aws_secret_access_key={AWS_SECRET} {SHORT_KEYS[0]}")] \
        == [("SECRET", TOKEN), ("SECRET", AWS_SECRET), ("SECRET", SHORT_KEYS[0])]
    assert [(f.type, f.value) for f in detect("to jane.doe%40example.com")] == [("EMAIL", "jane.doe%40example.com")]


# --------------------------------------------------------------------------- credential assignments

CREDS = [  # (text, the raw secret): only the value is masked, the name stays readable
    ("api_key=Zx9QwErTy8uI", "Zx9QwErTy8uI"),
    ("client = Client(api-key='Zx9QwErTy8uI')", "Zx9QwErTy8uI"),
    ('{"apikey": "Zx9QwErTy8uI", "n": 1}', "Zx9QwErTy8uI"),
    ("OPENAI_API_KEY=proj_live_9f8e7d6c5b4a", "proj_live_9f8e7d6c5b4a"),
    ("export GITHUB_TOKEN: proj_live_9f8e7d6c5b4a", "proj_live_9f8e7d6c5b4a"),
    ("MY_SERVICE_SECRET => proj_live_9f8e7d6c5b4a", "proj_live_9f8e7d6c5b4a"),
    ("DB_PASSWORD=pa55word&next=1", "pa55word"),
    ("password: hunter2Hunter2!", "hunter2Hunter2!"),
    ("PASSWD=hunter2Hunter2!;", "hunter2Hunter2!"),
    ("Server=db;Uid=sa;Pwd=hunter2Hunter2!;", "hunter2Hunter2!"),
    ("'secret': 'hunter2Hunter2!'", "hunter2Hunter2!"),
    ('"client_secret": "hunter2Hunter2!"}', "hunter2Hunter2!"),
    ("access_token=ya29.a0AfH6SMB1x2y3", "ya29.a0AfH6SMB1x2y3"),
    ("Refresh_Token := 1//0gLx9Qw8Er7Ty6", "1//0gLx9Qw8Er7Ty6"),
    ("auth_token: hunter2Hunter2!.", "hunter2Hunter2!"),  # the full stop is prose
    ("Authorization: Token 9f8e7d6c5b4a3f2e1d0c", "9f8e7d6c5b4a3f2e1d0c"),
    ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),  # base64 without a digit: mixed case
    ('"Proxy-Authorization": "Digest 9f8e7d6c5b4a"', "9f8e7d6c5b4a"),
    ("AUTHORIZATION=9f8e7d6c5b4a3f2e", "9f8e7d6c5b4a3f2e"),  # no scheme
    ("x-api-key: 0123456789abcdef0123", "0123456789abcdef0123"),
    ("X-Auth-Token: 0123456789abcdef", "0123456789abcdef"),
    ("curl --password=hunter2Hunter2!", "hunter2Hunter2!"),
]


def test_credential_assignments_mask_the_value_only() -> None:
    for text, raw in CREDS:
        _check(ON, text, text.replace(raw, secret(raw), 1), raw)
        _check(OFF, text, text.replace(raw, secret(raw), 1), raw)  # a key is never kept
        assert [(f.type, f.value) for f in detect(text)] == [("SECRET", raw)], text


def test_credential_assignments_inside_obj() -> None:
    value: dict[str, Any] = {"log": [text for text, _ in CREDS], (CREDS[0][0], 1): {CREDS[3][0]}}
    out = ON.obj(value)
    dump = repr(out)
    for _, raw in CREDS:
        assert raw not in dump, raw
    assert out["log"] == [text.replace(raw, secret(raw), 1) for text, raw in CREDS]
    assert out[(f"api_key={secret('Zx9QwErTy8uI')}", 1)] == {f"OPENAI_API_KEY={secret('proj_live_9f8e7d6c5b4a')}"}
    assert ON.obj(out) == out and OFF.obj(value) == out  # idempotent; the same with redact off


def test_credential_look_alikes_stay() -> None:
    for text in [
        "the password is required", "Enter your password: it must be long", "token: <redacted>", "password: ********",
        "api_key=${OPENAI_API_KEY}", "OPENAI_API_KEY: $OPENAI_API_KEY", "password=", "api_key=''", 'password: ""',
        "api_key=short", "secret: practice", "api_key=api_key", "password=self.password", "api_key=YOUR_API_KEY",
        'api_key = os.environ["OPENAI_API_KEY"]', "api_key=os.getenv('KEY')", "password: %(password)s",
        "password: {{ secrets.DB_PASSWORD }}", "OPENAI_API_KEY=sk-your-key-here", "api_key: your-api-key-here",
        "Reset your password: https://example.com/reset", "PWD=/home/jane/work", "Authorization: required for admin",
        "Authorization: Bearer YOUR_TOKEN_HERE", "Authorization: Bearer <token>", "max_tokens: 1024",
        "pad_token: <|endoftext|>", "primary_key: customer_id", "api_key_id=123456789", "passwordless: enabled_2fa",
    ]:
        real = f"{text}\nreal: api_key=Zx9QwErTy8uI"  # next to a real one, which is masked
        expected = f"{text}\nreal: api_key={secret('Zx9QwErTy8uI')}"
        assert ON.text(real) == expected and OFF.text(real) == expected, text
        assert [f.value for f in detect(real)] == ["Zx9QwErTy8uI"], text


def test_credential_placeholders_are_not_masked_again() -> None:
    for text, raw in CREDS:
        once = ON.text(text)
        assert ON.text(once) == once and OFF.text(once) == once
        assert [f.value for f in detect(once)] == [secret(raw)]  # the placeholder itself is the one finding
    email = placeholder("EMAIL", "jane@example.com", KEY)
    for text in (f"password: {secret('hunter2Hunter2!')}", f"api_key={email}", f"Authorization: Basic {secret('x')}"):
        assert ON.text(text) == text and OFF.text(text) == text


def test_credential_words_pass_the_fast_path() -> None:
    # no digit, '@' or '<': only the name lets the text through to the detectors, in any case
    for text, raw in [("PassWord: hunter!Hunter", "hunter!Hunter"), ("X-API-KEY=abc/def+ghi", "abc/def+ghi"),
                      ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz")]:
        _check(ON, text, text.replace(raw, secret(raw)), raw)
    assert not _maybe_pii("The quick brown fox jumps over the lazy dog")


def test_a_credential_kept_as_a_dict_entry_is_masked_like_one_written_out() -> None:
    """{"api_key": "Zx9..."} in a pipeline's metadata or a config: the value has no name beside it in its own
    string, so the entry is judged as `api_key=Zx9...` would be (found by a review)."""
    value = {"api_key": "Zx9QwErTy8uI", "nested": [{"DB_PASSWORD": "hunter2Hunter2!"}], "max_tokens": "1024",
             "primary_key": "customer_id", "api_key_ref": "${OPENAI_API_KEY}", "note": "Zx9QwErTy8uI stays: no name"}
    out = ON.obj(value)
    assert out["api_key"] == secret("Zx9QwErTy8uI") and out["nested"] == [{"DB_PASSWORD": secret("hunter2Hunter2!")}]
    assert {k: out[k] for k in ("max_tokens", "primary_key", "api_key_ref", "note")} == {
        k: value[k] for k in ("max_tokens", "primary_key", "api_key_ref", "note")}
    assert ON.obj(out) == out and OFF.obj(value) == out
