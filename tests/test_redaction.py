"""Secrets in entries: every string at any depth goes through the patterns, and a field whose
name says it holds a secret is masked whatever its value. A real program first, then the
pieces (`vlhook._redact.Redactor`, `vlhook._entry.EntryBuilder`)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
from typing import Any, Optional

import pytest

from conftest import messages, run_python
from vlhook._captures import Line, Record, uncaught
from vlhook._captures import line as make_line
from vlhook._captures import record as make_record
from vlhook._config import load
from vlhook._entry import MAX_DEPTH, MAX_NESTED_VALUES, Entry, EntryBuilder
from vlhook._redact import MASK, TOO_MANY, Redactor, field_name
from vlhook._stats import Stats

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "abcdefghijklmnop0123"  # after "Bearer ": a pattern
URL_PASSWORD = "pw-9f8e7d"  # in https://bob:...@host: a pattern
NAMED = "hunter2-named"  # matches no pattern: only its field's name betrays it
ALL = (AWS_KEY, TOKEN, URL_PASSWORD, NAMED)
T_NS = 1_700_000_000_000_000_000


def stored_text(rows: list[dict[str, str]]) -> str:
    return json.dumps(rows)


# -- a real program ---------------------------------------------------------------------------

PROGRAM = f"""
import json, logging, sys
import vlhook
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
log = logging.getLogger("app")
print(json.dumps({{"msg": "printed", "auth": {{"h": "Bearer {TOKEN}"}},
                  "req": {{"headers": [["X-Api-Key", "{NAMED}"]],
                           "Cookie": ["{NAMED}"], "deep": [{{"Password": "{NAMED}"}}],
                           "note": "key {AWS_KEY}"}}}}))
log.info("extra", extra={{"k": {{"a": "{AWS_KEY}", "u": "https://bob:{URL_PASSWORD}@host/",
                               "client_secret": {{"v": "{NAMED}"}}}}, "db_password": "{NAMED}"}})
try:
    raise RuntimeError("connect https://bob:{URL_PASSWORD}@db/ with {AWS_KEY}")
except RuntimeError:
    log.exception("failed")
log.info("stack", stack_info=True, extra={{"where": "{AWS_KEY}"}})
vlhook.bind(session_id="{NAMED}", ctx={{"items": ("Bearer {TOKEN}", 1)}})
log.info("bound")
print("plain line")
raise ValueError("uncaught with {AWS_KEY} and https://bob:{URL_PASSWORD}@x/")
"""


def test_a_program_ships_no_secret_at_any_depth(script: Any, sink: Any) -> None:
    run = run_python(script(PROGRAM), sink.env())
    assert run.rc == 1 and "ValueError" in run.err
    assert all(secret in run.out + run.err for secret in (AWS_KEY, TOKEN, URL_PASSWORD, NAMED))
    rows = sink.settle(7)
    by_msg = {r["_msg"].splitlines()[0]: r for r in rows}
    assert {"printed", "extra", "failed", "stack", "bound", "plain line"} <= set(by_msg)
    stored = stored_text(rows)
    for secret in ALL:
        assert secret not in stored, secret
    printed = by_msg["printed"]  # the receiver flattens nested objects as the server does
    assert printed["auth"] == MASK
    assert printed["req.Cookie"] == MASK
    assert printed["req.note"] == f"key {MASK}"
    assert by_msg["extra"]["k.a"] == MASK and by_msg["extra"]["db_password"] == MASK
    assert by_msg["extra"]["k.client_secret"] == MASK
    assert f"https://bob:{MASK}@host/" == by_msg["extra"]["k.u"]
    assert MASK in by_msg["failed"]["exception.message"]
    assert MASK in by_msg["failed"]["exception.stacktrace"]
    assert "stack_info" in by_msg["stack"] and by_msg["stack"]["where"] == MASK
    assert by_msg["bound"]["session_id"] == MASK
    assert MASK in by_msg["bound"]["ctx.items"]
    uncaught = next(r for r in rows if r.get("exception.type") == "ValueError")
    assert MASK in uncaught["exception.message"]


def test_redact_keys_extends_the_list_and_off_turns_everything_off(script: Any, sink: Any) -> None:
    code = (
        "import json\n"
        'print(json.dumps({"msg": "m1", "customer": {"SSN": "123-45-6789"}, "password": "pw"}))\n'
    )
    run_python(script(code), sink.env(VICTORIALOGS_REDACT_KEYS="ssn, card_number"))
    (row,) = sink.settle(1)
    assert row["customer.SSN"] == MASK and row["password"] == MASK
    run = run_python(
        script(code.replace("m1", "m2")),
        sink.env(VICTORIALOGS_REDACT="off", VICTORIALOGS_REDACT_KEYS="ssn"),
    )
    assert "VICTORIALOGS_REDACT_KEYS is ignored" in run.err
    row = next(r for r in sink.settle(2) if r["_msg"] == "m2")
    assert row["customer.SSN"] == "123-45-6789" and row["password"] == "pw"


def test_the_users_patterns_mask_every_text_that_holds_their_literals(
    script: Any, sink: Any
) -> None:
    """A pattern of VICTORIALOGS_REDACT is tried only on the texts that hold its literal
    (`ghp_`, `internal-` in any case), found by the searches each group of lines gets, as the
    built-in patterns are: the token printed among plain lines, a record's message and
    `extra=` field, and a JSON line's value are masked; the lines around them are stored as
    they were written."""
    token = "ghp_" + "a1B2" * 9
    code = (
        "import json, logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "for i in range(300):\n"
        "    print(f'plain {i}')\n"
        f"print('cloning with {token} now')\n"
        "print('INTERNAL-42 in upper case')\n"
        f"logging.getLogger('app').info('using %s', '{token}', extra={{'ref': 'Internal-7'}})\n"
        f"print(json.dumps({{'msg': 'json', 'k': '{token}'}}))\n"
    )
    patterns = r"ghp_[A-Za-z0-9]{36},,(?i)internal-\d+"
    run = run_python(script(code), sink.env(VICTORIALOGS_REDACT=patterns))
    assert run.rc == 0 and run.out.count(token) == 2 and token in run.err  # as written
    rows = sink.settle(304)
    stored = stored_text(rows)
    assert token not in stored and "internal-" not in stored.lower()
    by_msg = {row["_msg"]: row for row in rows}
    assert {f"cloning with {MASK} now", f"{MASK} in upper case", f"using {MASK}"} < set(by_msg)
    assert by_msg[f"using {MASK}"]["ref"] == MASK and by_msg["json"]["k"] == MASK
    assert {f"plain {i}" for i in range(300)} < set(by_msg)


def test_a_users_pattern_that_matches_an_empty_text_masks_only_what_it_holds(
    script: Any, sink: Any
) -> None:
    """`x*` (meant as `x+`), `(?:token)?` or `\\b` match an empty text at every place: every
    line was stored as `[REDACTED]h[REDACTED]e[REDACTED]l...`. Only what a match holds is
    masked now."""
    code = "print('hello world')\nprint('tokens: xxx-token-xx')\n"
    run = run_python(script(code), sink.env(VICTORIALOGS_REDACT=r"x*,,(?:token)?,,\b"))
    assert run.rc == 0 and run.err == ""
    assert sorted(messages(sink.settle(2))) == [f"{MASK}s: {MASK}-{MASK}-{MASK}", "hello world"]


def test_a_name_or_pattern_meeting_msg_leaves_every_message_stored(script: Any, sink: Any) -> None:
    """`VICTORIALOGS_REDACT_KEYS=msg` masked the message of records, JSON lines and lines with
    bound fields (whose field is `_msg`), and a pattern matching `_msg` renamed that field: the
    server stored no message. Each message arrives as written; the program's `msg` field is
    masked; bytes no stream could decode leave bound objects stored as objects."""
    code = (
        "import json, logging, sys\n"
        "import vlhook\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "print('plain msg one')\n"
        'print(json.dumps({"message": "from json", "msg": "theirs"}))\n'
        'logging.getLogger("app").info("logged msg")\n'
        'vlhook.bind(user={"id": 7, "roles": ["admin"]})\n'
        "print('bound msg')\n"
        "sys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'caf\\xe9 bound\\n')\n"
    )
    settings = [{"VICTORIALOGS_REDACT_KEYS": "msg"}, {"VICTORIALOGS_REDACT": "_m"}]
    for number, env in enumerate(settings):
        fields = f"test_id={sink.test_id},run={number}"
        run = run_python(script(code), sink.env(VICTORIALOGS_FIELDS=fields, **env))
        assert run.rc == 0 and run.err.count("INFO:app:logged msg") == 1, run.err
        assert run.stdout.endswith(b"bound msg\ncaf\xe9 bound\n")  # the bytes as written
    stored = sink.settle(10)
    for number in range(len(settings)):
        rows = {row["_msg"]: row for row in stored if row["run"] == str(number)}
        assert set(rows) == {"plain msg one", "from json", "logged msg", "bound msg",
                             "caf\ufffd bound"}  # fmt: skip
        assert rows["from json"]["msg"] == (MASK if number == 0 else "theirs")
        assert rows["caf\ufffd bound"]["user.id"] == "7"  # stored flattened: an object


def test_a_masked_json_object_with_undecodable_bytes_is_stored(script: Any, sink: Any) -> None:
    """A JSON line without a message key, holding a secret's name and bytes no stream could
    decode: its masked copy was refused by orjson, and the sender reported an internal error
    instead of storing the lines of its group."""
    code = (
        "import json\n"
        "print('before')\n"
        'print(json.dumps({"user": "b\\udcff", "creds": {"password": "hunter2"}}))\n'
        "print('after')\n"
    )
    run = run_python(script(code), sink.env())
    assert run.rc == 0 and "internal error" not in run.err, run.err
    rows = {row["_msg"]: row for row in sink.settle(3)}
    masked = json.dumps(
        {"user": "b\ufffd", "creds": {"password": MASK}}, separators=(",", ":"), ensure_ascii=False
    )
    assert set(rows) == {"before", masked, "after"}, rows
    assert "hunter2" not in json.dumps(list(rows.values()))


def test_constant_fields_are_redacted_as_any_field(script: Any, sink: Any) -> None:
    """VICTORIALOGS_FIELDS, the job and the container name go in every entry: a secret's name
    or a pattern masks them there too."""
    env = sink.env(
        VICTORIALOGS_FIELDS=f"test_id={sink.test_id},db_password={NAMED},"
        f"note=Bearer {TOKEN},env=prod",
        VICTORIALOGS_JOB=f"https://u:{URL_PASSWORD}@h",
    )
    run_python(script("print('with constants')\n"), env)
    (row,) = sink.settle(1)
    assert row["db_password"] == MASK and row["note"] == f"Bearer {MASK}"
    assert row["job"] == f"https://u:{MASK}@h" and row["env"] == "prod"
    assert not [secret for secret in ALL if secret in stored_text([row])]


NESTED_NAMES = f"""
import json, logging, sys
import vlhook
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
print(json.dumps({{"msg": "line", "api": {{"key": "{NAMED}", "version": "v2"}},
                  "my": {{"pass": {{"word": "{NAMED}"}}}}, "user": {{"name": "amy"}}}}))
print(json.dumps({{"msg": "flat shape", "n": 1, "stripe": {{"api": {{"key": "{NAMED}"}}}}}}))
logging.getLogger("app").info("record", extra={{"client": {{"api": {{"Key": "{NAMED}"}}}},
                                                "tok": {{"en": "{NAMED}"}}}})
vlhook.bind(api={{"key": "{NAMED}", "region": "eu"}})
print("bound")
"""


def test_a_secret_named_by_its_flattened_path_is_masked(script: Any, sink: Any) -> None:
    """The server stores `{"api": {"key": ...}}` as the field `api.key`: the deny list is
    matched against that name, not against `api` and `key` one at a time."""
    run = run_python(script(NESTED_NAMES), sink.env())
    assert run.rc == 0 and NAMED in run.out
    rows = {row["_msg"]: row for row in sink.settle(4)}
    assert NAMED not in stored_text(list(rows.values()))
    assert rows["line"]["api.key"] == MASK and rows["line"]["my.pass.word"] == MASK
    assert rows["line"]["api.version"] == "v2" and rows["line"]["user.name"] == "amy"
    assert rows["flat shape"]["stripe.api.key"] == MASK
    assert rows["record"]["client.api.Key"] == MASK and rows["record"]["tok.en"] == MASK
    assert rows["bound"]["api.key"] == MASK and rows["bound"]["api.region"] == "eu"


NAMED_IN_TEXT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
print({"user": "bob", "password": "pw-repr-1"})
print("login user=bob password=pw-logfmt-2 api_key=key-val-3 tokens=12")
print(json.dumps({"user": "bob", "db_password": "pw-pretty-4"}, indent=2))
logging.info("config %s", {"DB_PASSWORD": "pw-record-5"})
print("Authorization: Basic dXNlcjpwdy02")
print('curl -H "X-Api-Key: key-val-7" "https://h/cb?code=1&access_token=tok-val-8"')
print("export AWS_SESSION_TOKEN=tok-val-9; ./run --password=pw-10")
print("DB_PASS=pw-env-11 RAILS_MASTER_KEY=key-env-12 bypass=true")
"""


def test_a_secret_named_in_the_text_of_a_line_is_masked(script: Any, sink: Any) -> None:
    """A line that names a secret before its value (a dict's repr, logfmt, pretty-printed
    JSON, a header, a query string, a command line) has the value masked; what only looks
    like a secret's name (`tokens=12`) is left alone."""
    run = run_python(script(NAMED_IN_TEXT), sink.env())
    assert run.rc == 0 and "pw-repr-1" in run.out and "pw-record-5" in run.err
    rows = sink.settle(8)  # the record's and the pretty-printed object's one entry each
    assert len(rows) == 8, [row["_msg"] for row in rows]
    # The values are distinct enough to be found nowhere else: a record's code path holds the
    # test's directory (`pytest-8`), which a value `t-8` was found in.
    stored = stored_text(rows)
    for secret in ("pw-repr-1", "pw-logfmt-2", "key-val-3", "pw-pretty-4", "pw-record-5",
                   "dXNlcjpwdy02", "key-val-7", "tok-val-8", "tok-val-9", "pw-10", "pw-env-11",
                   "key-env-12"):  # fmt: skip
        assert secret not in stored, secret
    messages = [row["_msg"] for row in rows]
    assert f"{{'user': 'bob', 'password': '{MASK}'}}" in messages
    assert f"login user=bob password={MASK} api_key={MASK} tokens=12" in messages
    # pretty-printed at once: one entry, the object's field masked, and its text where it is
    # the message
    (pretty,) = [row for row in rows if row.get("user") == "bob"]
    assert pretty["db_password"] == MASK and f'"db_password":"{MASK}"' in pretty["_msg"]
    assert f"Authorization: Basic {MASK}" in messages
    assert f'curl -H "X-Api-Key: {MASK}" "https://h/cb?code=1&access_token={MASK}"' in messages
    assert f"DB_PASS={MASK} RAILS_MASTER_KEY={MASK} bypass=true" in messages


COMMAND_LINES = """
import logging, subprocess, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
print("deploy --api-key key-flag-1 --region eu")
try:
    subprocess.run([sys.executable, "-c", "raise SystemExit(3)", "--password", "pw-flag-2"],
                   check=True)
except subprocess.CalledProcessError:
    logging.exception("login failed")
"""


def test_a_secret_after_a_command_lines_flag_is_masked(script: Any, sink: Any) -> None:
    """A command line printed as typed, and the argument list subprocess's error puts in its
    message (logged with its traceback): the value after `--api-key` and `--password` is
    masked in the message and in the exception, the program's own output keeps it."""
    run = run_python(script(COMMAND_LINES), sink.env())
    assert run.rc == 0 and "key-flag-1" in run.out and "pw-flag-2" in run.err, run.err
    rows = sink.settle(2)
    stored = stored_text(rows)
    assert "key-flag-1" not in stored and "pw-flag-2" not in stored
    by_message = {row["_msg"].split("\n")[0]: row for row in rows}
    assert f"deploy --api-key {MASK} --region eu" in by_message
    failed = by_message["login failed"]
    masked = f"'--password', '{MASK}']' returned non-zero exit status 3"
    assert masked in failed["exception.message"] and masked in failed["exception.stacktrace"]


SOURCE_LINES = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
def connect(auth, password):
    raise ConnectionError("auth server down")
def login(user):
    token = user.upper()
    session = connect(auth=token, password="pw-src-1")
try:
    login("bob")
except ConnectionError:
    logging.exception("login failed")
login("bob")
"""


def test_the_source_lines_of_a_traceback_keep_their_code(script: Any, sink: Any) -> None:
    """The lines of code a traceback shows name secrets' variables (`session = connect(...)`,
    `auth=token`): they reach the server as written, in a logged exception's stacktrace and
    in an uncaught one printed to stderr; a literal there is still masked."""
    run = run_python(script(SOURCE_LINES), sink.env())
    assert run.rc == 1 and 'password="pw-src-1")' in run.err, run.err
    rows = sink.settle(2)
    assert "pw-src-1" not in stored_text(rows)
    logged = next(row for row in rows if row["_msg"].startswith("login failed"))
    uncaught = next(row for row in rows if row["_msg"].startswith("Traceback"))
    code = f'    session = connect(auth=token, password="{MASK}")\n'
    for text in (logged["exception.stacktrace"], uncaught["_msg"]):
        assert code in text, text


URL_CREDENTIALS = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
log = logging.getLogger("httpx")
token = "ghp_" + "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1Jh0Gf9Ed8Cb7"
print(f"git clone https://{token}@github.com/org/app.git")
print(f"git remote set-url origin https://{token}:x-oauth-basic@github.com/org/app.git")
log.info('HTTP Request: %s %s "%s %d %s"', "GET",
         "https://b.s3.amazonaws.com/r.csv?X-Amz-Expires=60&X-Amz-Signature=5ig0f0123abcd",
         "HTTP/1.1", 200, "OK")
print("https://acct.blob.core.windows.net/c/r.csv?sv=2022-11-02&sp=r&sig=5ig1%2Babc%3D")
print("HTTP Request: GET https://api.example.com/v1/orders?page=2 \\"HTTP/1.1 200 OK\\"")
bot = "123456789:" + "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
log.info('HTTP Request: %s %s "%s %d %s"', "POST",
         f"https://api.telegram.org/bot{bot}/sendMessage", "HTTP/1.1", 200, "OK")
print("alert sent to https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/" + "Zq8Xw7Vu6Ts5Rq4Po3N")
"""


def test_a_urls_token_and_a_signed_urls_signature_reach_the_server_masked(
    script: Any, sink: Any
) -> None:
    """A token given to git as a URL's user name, alone or before a password that says
    nothing, the signature of an S3 or Azure signed URL, and the secret in a Telegram bot's
    and a Slack webhook's URL (printed, and logged the way httpx logs a request): the program
    prints them as ever, the server stores them masked, and a URL that holds no credential
    is stored as written."""
    run = run_python(script(URL_CREDENTIALS), sink.env())
    assert run.rc == 0 and "ghp_Zq8X" in run.out and "5ig0f0123abcd" in run.err, run.err
    assert "AAHdqTcv" in run.err and "Zq8Xw7Vu6Ts5Rq4Po3N" in run.out
    rows = sink.settle(7)
    stored = stored_text(rows)
    for secret in ("Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1Jh0Gf9Ed8Cb7", "x-oauth-basic", "5ig0", "5ig1",
                   "AAHdqTcv", "Zq8Xw7Vu6Ts5Rq4Po3N"):  # fmt: skip
        assert secret not in stored, secret
    messages = [row["_msg"] for row in rows]
    assert f"git clone https://{MASK}@github.com/org/app.git" in messages
    assert f"git remote set-url origin https://{MASK}:{MASK}@github.com/org/app.git" in messages
    assert (f'HTTP Request: GET https://b.s3.amazonaws.com/r.csv?X-Amz-Expires=60'
            f'&X-Amz-Signature={MASK} "HTTP/1.1 200 OK"') in messages  # fmt: skip
    assert f"https://acct.blob.core.windows.net/c/r.csv?sv=2022-11-02&sp=r&sig={MASK}" in messages
    plain = 'HTTP Request: GET https://api.example.com/v1/orders?page=2 "HTTP/1.1 200 OK"'
    assert plain in messages
    telegram = (
        f'HTTP Request: POST https://api.telegram.org/bot{MASK}/sendMessage "HTTP/1.1 200 OK"'
    )
    assert telegram in messages
    assert f"alert sent to https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/{MASK}" in messages


PRIVATE_KEYS = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
body = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
        "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu"]
def pem(kind):
    return "\\n".join([f"-----BEGIN {kind}-----", *body, f"-----END {kind}-----"])
print("before")
print(pem("PRIVATE KEY"))  # one write
for line in pem("RSA PRIVATE KEY").splitlines():  # a write a line
    print(line)
print("after")
logging.info("loaded %s", pem("EC PRIVATE KEY"))
print({"service_account": "sa", "pem": pem("PRIVATE KEY")})
"""


def test_a_private_key_printed_or_logged_reaches_the_server_masked(script: Any, sink: Any) -> None:
    """A PEM private key printed at once or line by line, logged, or inside an object's repr:
    the program prints it as ever, and the server stores its header and end with the body
    masked, the lines around it as lines of their own."""
    run = run_python(script(PRIVATE_KEYS), sink.env())
    assert run.rc == 0 and run.out.count("MIIEvQIBADANBgkq") == 3, run.err
    rows = sink.settle(6)
    stored = stored_text(rows)
    assert "MIIEvQIBADANBgkq" not in stored and "MzEfYyjiWA4R4" not in stored
    messages = [row["_msg"] for row in rows]
    assert messages[0] == "before" and "after" in messages
    for kind in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        assert f"-----BEGIN {kind}-----\n{MASK}\n-----END {kind}-----" in messages
    assert f"loaded -----BEGIN EC PRIVATE KEY-----\n{MASK}\n-----END EC PRIVATE KEY-----" in \
        messages  # fmt: skip


KEY_FILE = """
import subprocess, sys
print("start", flush=True)
subprocess.run(["cat", sys.argv[1]], check=True)  # an entrypoint's `cat key.pem`
print("end", flush=True)
"""


def test_a_private_key_a_child_process_writes_to_the_descriptor_is_masked(
    script: Any, sink: Any, tmp_path: Any
) -> None:
    """Under VICTORIALOGS_CAPTURE=fd, what reaches descriptor 1 from any process is read as
    lines: a key file written there by `cat` is one entry, masked."""
    key_file = tmp_path / "key.pem"
    key_file.write_text("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_LINES) +
                        "\n-----END RSA PRIVATE KEY-----\n")  # fmt: skip
    env = sink.env(VICTORIALOGS_CAPTURE="fd,logging")
    run = run_python(script(KEY_FILE), env, args=(str(key_file),))
    assert run.rc == 0 and KEY_LINES[0] in run.out, run.err
    rows = sink.settle(3)
    assert KEY_LINES[0] not in stored_text(rows) and KEY_LINES[1] not in stored_text(rows)
    # In any order: lines the helper reads at once share one time (the key and "end", say).
    assert sorted(row["_msg"] for row in rows) == [
        f"-----BEGIN RSA PRIVATE KEY-----\n{MASK}\n-----END RSA PRIVATE KEY-----",
        "end",
        "start",
    ]


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["password", "PASSWORD", "Password", "db_password", "DB-Password", "user.password",
     "passwd", "mysql_pwd", "passphrase", "secret", "client_secret", "clientSecret",
     "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "secret_key", "private_key",
     "privateKey", "PRIVATE-KEY", "token", "access_token", "accessToken", "refresh-token",
     "id_token", "X-Auth-Token", "csrftoken", "_xsrf", "api_key", "apikey", "apiKey",
     "X-Api-Key", "x_api_key", "auth", "basic_auth", "Authorization", "proxy-authorization",
     "bearer", "jwt", "credentials", "credential", "Cookie", "cookies", "Set-Cookie",
     "set_cookie", "session", "sessionid", "session_id", "SESSION-ID", "user_session",
     "PHPSESSID", "JSESSIONID", "connect.sid", "password_confirmation", "signing_key",
     "ENCRYPTION_KEY", "DB_PASS", "SMTP_PASS", "redis_pass", "EMAIL_PASS", "LDAP_PASS",
     "RAILS_MASTER_KEY", "SECRET_KEY_BASE", "AccountKey", "SharedAccessKey", "access_key",
     "accessKey", "Ocp-Apim-Subscription-Key", "subscription_key"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert Redactor().name(name)[0], name


@pytest.mark.parametrize(
    "name",
    ["author", "prompt_tokens", "max_tokens", "tokens", "token_count", "session_duration",
     "secretary", "keyboard", "monkey", "key", "user", "message", "ip_address", "remote_addr",
     "x_forwarded_for", "pid", "path", "authored_by", "cookie_count", "bypass", "compass",
     "first_pass", "passes", "master", "key_base", "aws_access_key_id", "SharedAccessKeyName"],
)  # fmt: skip
def test_ordinary_names(name: str) -> None:
    assert Redactor().name(name) == (False, None), name


@pytest.mark.parametrize(
    ("text", "redacted"),
    [("DefaultEndpointsProtocol=https;AccountName=shop;AccountKey=c2VjcmV0a2V5MTIz==;"
      "EndpointSuffix=core.windows.net",
      f"DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={MASK};"
      "EndpointSuffix=core.windows.net"),  # an Azure storage connection string
     ("Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=send;"
      "SharedAccessKey=bXlrZXkxMjM0NQ==",
      "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=send;"
      f"SharedAccessKey={MASK}"),  # Azure Service Bus's: the key's name is no secret
     ("Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef",
      f"Ocp-Apim-Subscription-Key: {MASK}"),  # Azure API Management's header
     ("minio access_key=AKMINIO123 secret_key=minio-secret-9",
      f"minio access_key={MASK} secret_key={MASK}")],
)  # fmt: skip
def test_cloud_keys_named_in_text_are_masked(text: str, redacted: str) -> None:
    """Names sentry-python's list lacks that hold a key: their values went as printed."""
    assert Redactor()(text) == redacted


def test_redact_keys_is_read_as_a_comma_list_and_warns_about_what_names_nothing() -> None:
    config = load({"VICTORIALOGS_REDACT_KEYS": " ssn , Card-Number,,-, "})
    assert config.redact_keys == ("ssn", "Card-Number")
    assert config.warnings == ("VICTORIALOGS_REDACT_KEYS='-' is not valid; using the other names",)
    off = load({"VICTORIALOGS_REDACT": "off", "VICTORIALOGS_REDACT_KEYS": "ssn"})
    assert off.redact_keys == () and "ignored" in off.warnings[0]


def test_names_are_compared_without_case_or_separators() -> None:
    assert field_name("X-Api_Key.v 2") == "xapikeyv2"
    r = Redactor(names=("Card-Number",))
    assert r.name("card_number")[0] and r.name("CARDNUMBER")[0] and r.name("billing.cardNumber")[0]
    assert not r.name("password")[0]  # only the names given
    assert Redactor(names=("", "-")).names == ()  # a name of separators only matches nothing


# -- nested values ----------------------------------------------------------------------------


def r() -> Redactor:
    red = Redactor()
    red.left = MAX_NESTED_VALUES
    return red


@pytest.mark.parametrize(
    "value", ["x", "", 1, 0, 2.5, {"a": {"b": "c"}}, [1, "2"], ("t",), object(), b"raw"]
)
def test_a_secret_named_field_is_masked_whatever_its_value(value: Any) -> None:
    assert r().nested({"password": value, "ok": "kept"}, MAX_DEPTH) == {
        "password": MASK,
        "ok": "kept",
    }


@pytest.mark.parametrize("value", [None, True, False])
def test_a_secret_named_field_that_holds_nothing_is_left_as_it_is(value: Any) -> None:
    """`{"token": null}` printed became `{"token": "[REDACTED]"}`, a string where the program
    wrote none, as `token=None` in text never did; a flag (`"auth": true`) hides no secret."""
    data = {"password": value, "ok": "kept"}
    assert r().nested(data, MAX_DEPTH) is data
    b, _ = builder()
    (entry,) = b.from_line(line(json.dumps({"msg": "login", "token": value, "api_key": "k1"})))
    assert (entry["token"], entry["api_key"]) == (value, MASK)


def test_every_string_at_any_depth_is_redacted() -> None:
    value = {
        "list": [f"k {AWS_KEY}", ("tuple", f"Bearer {TOKEN}"), [[{"url": f"https://u:{NAMED}@h"}]]],
        "Nested": {"Deeper": {"API-KEY": 12345, "fine": "text"}},
        f"key {AWS_KEY}": "a secret in a key",
        3: "non-string key",
    }
    out = r().nested(value, MAX_DEPTH)
    assert out == {
        "list": [f"k {MASK}", ["tuple", f"Bearer {MASK}"], [[{"url": f"https://u:{MASK}@h"}]]],
        "Nested": {"Deeper": {"API-KEY": MASK, "fine": "text"}},
        f"key {MASK}": "a secret in a key",
        3: "non-string key",
    }
    assert all(secret not in repr(out) for secret in ALL)


def test_the_programs_objects_are_never_changed() -> None:
    inner = {"password": "x", "list": [f"Bearer {TOKEN}"]}
    value = {"inner": inner, "same": {"a": [1, 2]}}
    before = json.dumps(value)
    out = r().nested(value, MAX_DEPTH)
    assert json.dumps(value) == before
    assert out is not value and out["same"] is value["same"]  # only what changed is copied
    clean = {"a": [1, {"b": ("c", 2.0)}], "n": None}
    assert r().nested(clean, MAX_DEPTH) is clean


def test_counts_what_it_redacted() -> None:
    red = r()
    red.nested({"token": 1, "a": [f"x {AWS_KEY}", "y"], f"{AWS_KEY}": 2}, MAX_DEPTH)
    assert red.hits == 3


@pytest.mark.parametrize("levels", [MAX_DEPTH + 5, 5000])  # 5000: past the recursion limit
def test_deep_values_are_bounded_and_still_redacted(levels: int) -> None:
    deep: Any = f"leaf {AWS_KEY}"
    for _ in range(levels // 2):
        deep = {"d": [deep]}
    level, kept = r().nested(deep, MAX_DEPTH), 0
    while isinstance(level, (dict, list)):
        level = level["d"] if isinstance(level, dict) else level[0]
        kept += 1
    assert kept == MAX_DEPTH and isinstance(level, str)  # deeper: text
    assert AWS_KEY not in level
    assert levels > 100 or MASK in level


def test_a_secret_name_past_the_depth_limit_masks_the_text() -> None:
    deep: Any = {"password": NAMED}
    for _ in range(MAX_DEPTH + 2):
        deep = {"d": deep}
    flat = json.dumps(r().nested(deep, MAX_DEPTH))
    assert NAMED not in flat and MASK in flat


def test_loops_are_cut() -> None:
    loop: dict[str, Any] = {"name": "loop", "token": "t"}
    loop["self"] = loop
    items: list[Any] = [f"Bearer {TOKEN}"]
    items.append(items)
    assert r().nested(loop, MAX_DEPTH) == {"name": "loop", "token": MASK, "self": "{...}"}
    assert r().nested(items, MAX_DEPTH) == [f"Bearer {MASK}", "[...]"]


def test_huge_values_are_not_walked_past_the_budget() -> None:
    red = r()
    huge = [f"x {AWS_KEY}"] * (MAX_NESTED_VALUES + 1)
    assert red.nested({"big": huge, "small": [1]}, MAX_DEPTH) == {"big": TOO_MANY, "small": [1]}
    wide = {f"k{i}": {"password": NAMED} for i in range(MAX_NESTED_VALUES)}
    assert NAMED not in json.dumps(r().nested(wide, MAX_DEPTH))


def test_objects_are_made_text_and_redacted_except_what_the_encoder_writes_itself() -> None:
    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    class Opaque:
        def __str__(self) -> str:
            return f"Opaque(url=https://u:{URL_PASSWORD}@h/)"

    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    out = r().nested([Login("bob", NAMED), Opaque(), when, {3}], MAX_DEPTH)
    assert out[0] == {"user": "bob", "password": MASK}
    assert out[1] == f"Opaque(url=https://u:{MASK}@h/)"
    assert out[2] is when
    assert out[3] == "{3}"


def test_nothing_is_masked_without_patterns_and_names_but_nesting_is_bounded() -> None:
    off = Redactor(builtin=False, names=())
    off.left = MAX_NESTED_VALUES
    value = {"password": f"Bearer {TOKEN}", "a": [AWS_KEY]}
    assert off.nested(value, MAX_DEPTH) is value
    loop: list[Any] = []
    loop.append(loop)
    assert off.nested(loop, MAX_DEPTH) == ["[...]"]


# -- entries ----------------------------------------------------------------------------------


def builder(**env: str) -> tuple[EntryBuilder, Stats]:
    stats = Stats()
    return EntryBuilder(load(env), stats), stats


def line(text: str, bound: Any = None) -> Line:
    return make_line(0, text, T_NS, (None, bound) if bound is not None else None)


def record_item(msg: str, extra: dict[str, Any], exc: bool = False, stack: bool = False) -> Record:
    exc_info = None
    if exc:
        try:
            raise KeyError(f"no https://u:{URL_PASSWORD}@h/ for {AWS_KEY}")
        except KeyError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("app", logging.ERROR, __file__, 1, msg, None, exc_info)
    rec.__dict__.update(extra)
    if stack:
        rec.stack_info = f"Stack (most recent call last):\n  token {AWS_KEY}"
    return make_record(rec, T_NS, 0, None, logging.ERROR, rec.getMessage(), [])


def only(entries: list[Entry]) -> Entry:
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2 next", f"password={MASK} next"),
        ("DB_PASSWORD: hunter2", f"DB_PASSWORD: {MASK}"),
        ("{'apiKey': 'k 1', 'n': 2}", f"{{'apiKey': '{MASK}', 'n': 2}}"),
        ('{"Password": "a \\" b"}', f'{{"Password": "{MASK}"}}'),
        ("Set-Cookie: sid=1", f"Set-Cookie: {MASK}"),
        ("Cookie: connect.sid=s%3Aabc; x=1", f"Cookie: {MASK}"),  # a header's: the line's rest
        ("GET /cb?session_id=abc&x=1", f"GET /cb?session_id={MASK}&x=1"),
        # A value after a name that is no secret's may hold one: `url`'s, `https`'s.
        ("url: https://h/cb?access_token=t1", f"url: https://h/cb?access_token={MASK}"),
        ("note=password=pw1 x", f"note=password={MASK} x"),
        ("password=a=b token=c", f"password={MASK} token={MASK}"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: Bearer {MASK}"),
        ("authorization: token abc", f"authorization: token {MASK}"),
        ("--client-secret=xyz", f"--client-secret={MASK}"),
        ('{\\"token\\": \\"t1\\"}', f'{{\\"token\\": \\"{MASK}\\"}}'),
        ("password=[REDACTED]", "password=[REDACTED]"),
        ("password=*** token=**x", f"password=*** token={MASK}"),
        ("Row(password=b'hunter2', n=1)", f"Row(password=b'{MASK}', n=1)"),  # bytes' prefix
        ("Authorization: ApiKey dkV1YT0=", f"Authorization: ApiKey {MASK}"),  # any scheme
        ('Authorization: Digest username="bob", response="6629"', f"Authorization: Digest {MASK}"),
        ("API Key: sk-live-1 and more", f"API Key: {MASK} and more"),  # a name of words
        ("user[password]=pw1&commit=Login", f"user[password]={MASK}&commit=Login"),
        ("password1=a password2=b", f"password1={MASK} password2={MASK}"),  # Django's forms
        ('{"password"=>"pw1"}', f'{{"password"=>"{MASK}"}}'),  # Ruby's hashes
        ('{"token":"t1"}', f'{{"token":"{MASK}"}}'),  # compact JSON: a quoted name, no space
        ("password=x,user=bob", f"password={MASK},user=bob"),
        ("(token=x)", f"(token={MASK})"),
        # What a built-in pattern masked of a value does not end it: the rest goes too.
        ("s3_auth=AKIAIOSFODNN7EXAMPLE:wJalrXUtn", f"s3_auth={MASK}"),
        ("Authorization: Bearer abcdefghijklmnop extra-secret", f"Authorization: Bearer {MASK}"),
        ("Authorization: lin_api_0123456789 (from env)", f"Authorization: {MASK}"),  # no scheme
        ("password=\\'hunter 2\\'", f"password=\\'{MASK}\\'"),  # a repr's escaped quotes
        ('password="hunter2', f'password="{MASK}"'),  # a quote the line does not close
        ("Session ID: abc123", f"Session ID: {MASK}"),  # the needle in a word before the last
        ("token_type=Bearer access_token=abcdefgh12345",
         f"token_type=Bearer access_token={MASK}"),
        # A command line's flag and the value after it: as typed, or as a list's repr or JSON
        # writes the arguments (subprocess's CalledProcessError says its command so).
        ("run --password hunter2 --verbose", f"run --password {MASK} --verbose"),
        ("login -u bob --password 'p w' -x", f"login -u bob --password '{MASK}' -x"),
        ("Command '['az', 'login', '--password', 'pw1', '-u', 'bob']' returned non-zero",
         f"Command '['az', 'login', '--password', '{MASK}', '-u', 'bob']' returned non-zero"),
        ('["tool", "--api-key", "k1"]', f'["tool", "--api-key", "{MASK}"]'),
        ('{\\"args\\": [\\"--token\\", \\"t1\\"]}',
         f'{{\\"args\\": [\\"--token\\", \\"{MASK}\\"]}}'),
        ("--client-secret\tabc", f"--client-secret\t{MASK}"),
        # Whatever the words after it hold: a flag's name is its own word.
        ("mysql --password hunter2 --host=db", f"mysql --password {MASK} --host=db"),
        ("./deploy --token tok_1 env=prod", f"./deploy --token {MASK} env=prod"),
        ("['app',\n '--password',\n 'hunter2']", f"['app',\n '--password',\n '{MASK}']"),  # pprint
        ("--auth basic x", f"--auth {MASK} x"),  # a flag's value is its next word, no scheme
        # A password of digits, not a port; a token of letters and digits; a capitals' value.
        ("https://bob:1234@host/", f"https://bob:{MASK}@host/"),
        ("redis://:8000pw@h:6379", f"redis://:{MASK}@h:6379"),
        ("use Bearer abcdefgh12", f"use Bearer {MASK}"),
        ("curl --token TOKENVALUE9", f"curl --token {MASK}"),
        ("--password ORD", f"--password {MASK}"),  # capitals, but no help's name for a value
        ("Bearer abcdefghijklmnopqrstu", f"Bearer {MASK}"),  # letters, but no word: too long
    ],
)  # fmt: skip
def test_a_value_after_a_secrets_name_in_text_is_masked(text: str, masked: str) -> None:
    assert (Redactor()(text) or text) == masked


@pytest.mark.parametrize(
    "text",
    ["tokens=12 max_tokens: 5", "author: bob", "session_duration=5s", "password_hash",
     "forgot password? reset it", "key: value", "at 12:30:01 token", "https://host:8443/x",
     "password=", "monkey=1",
     # A name with a colon and no space names no value: logging's default format, host:port.
     "DEBUG:botocore.auth:Calculating signature", "[app.auth:42] INFO", "http://auth:8080/x",
     "{'password': ['This field is required.']}", "token_type=Bearer expires_in=3600",
     '{"token": null, "session": false}', "password: None",  # literals: no value set
     # A flag followed by another flag or by nothing, or a flag of another name; a word alone.
     "pg_dump --no-password --host db", "--password-stdin < pw.txt", "['--token', '--debug']",
     "pass it with --token", "password hunter2", "x--password y", "-p hunter2",
     # A switch that says no, and argparse's usage (the value's name in capitals).
     "psql --no-password mydb", "usage: app [-h] [--token TOKEN] [--api-key API_KEY]",
     # Version pins and comparisons; a port with an `@` later in the URL; an object's repr;
     # a flag named in a message; click's help; "Bearer" in prose.
     "google-auth==2.23.0", "assert auth == 'basic'", "if token == expected:",
     "GET http://localhost:8000/api/users?email=bob@example.com", "http://localhost:5173/@vite",
     "client_session: <aiohttp.client.ClientSession object at 0x7f3>",
     "error: argument --token: expected one argument", "Invalid value for '--session': 'x'",
     "  --token TEXT        GitHub token.", "  --auth / --no-auth", "  --private-key FILE  key",
     "  --auth-token TOKEN  the token", "Using Bearer authentication for the API",
     "Missing bearer credentials in request"],
)  # fmt: skip
def test_text_that_names_no_secret_before_a_value_is_left_alone(text: str) -> None:
    assert Redactor()(text) is None


FRAME = '  File "/app/auth.py", line 12, in login\n'


@pytest.mark.parametrize(
    ("source", "masked"),
    [
        # Code: a call, a subscript, a variable, an f-string's template, a flag's variable.
        ("session = requests.Session()", None),
        ("token = self._get_token(user)", None),
        ('api_key = os.environ["API_KEY"]', None),
        ("secret_key = settings.SECRET_KEY", None),
        ("resp = client.post(url, auth=auth, token=token)", None),
        ('headers = {"Authorization": f"Bearer {token}"}', None),
        ('subprocess.run(["tool", "--password", password], check=True)', None),
        ("cookie = request.cookies.get('sid')", None),
        ('notify(channel="#alerts", token=token)', None),  # a `#` in a string: no comment
        # Literals: a string (any prefix but f), bytes, a number; a built-in pattern's match.
        ('password = "hunter2"', f'password = "{MASK}"'),
        ("connect(user, password=b'pw1')", f"connect(user, password=b'{MASK}')"),
        ("pin_token = 123456", f"pin_token = {MASK}"),
        ('subprocess.run(["tool", "--password", "pw2"])',
         f'subprocess.run(["tool", "--password", "{MASK}"])'),
        ('auth = ("bob", "AKIAIOSFODNN7EXAMPLE")', f'auth = ("bob", "{MASK}")'),
        # A comment is prose; a local's value as `capture_locals` shows it is a repr.
        ("client = connect()  # password: pw3", f"client = connect()  # password: {MASK}"),
        ("token = 'tok-local-4'", f"token = '{MASK}'"),
    ],
)  # fmt: skip
def test_a_tracebacks_source_lines_are_masked_only_where_they_hold_a_literal(
    source: str, masked: Optional[str]
) -> None:
    """A line of Python a traceback shows (four spaces in, right under its frame's `File`
    line) names variables, not values: only a literal there can be a secret. The same words
    outside a traceback are masked as any line's."""
    red = Redactor()
    for frame in (FRAME, FRAME.replace("\n", "\r\n")):
        text = f"Traceback (most recent call last):\n{frame}    {source}\n    ^^^^^\nKeyError: 1"
        expected = None if masked is None else text.replace(source, masked)
        assert red(text) == expected, frame
    assert red(source) is not None  # a line of its own: no code for all it knows


@pytest.mark.parametrize(
    "text",
    [
        # A name inside a string on a source line: what the string holds is text.
        FRAME + '    conn = connect("host=db user=app password=pg-pw-1 sslmode=require")\n',
        FRAME + '    requests.get("https://h/r?format=csv&api_key=key-val-2", timeout=1)\n',
        FRAME + '    subprocess.run("mysqldump --password=my-pw-3 db", shell=True)\n',
        FRAME + '    sock.sendall(b"GET / HTTP/1.1\\r\\nAuthorization: Basic dXNlcjpwdy00")\n',
        # What capture_locals prints under the source line: reprs, not code.
        FRAME + "    raise OSError('down')\n    parsed = ParseResult(query='token=tok-5')\n",
        FRAME + "    self.send(msg)\n    msg = b'GET / HTTP/1.1\\r\\nCookie: sessionid=f9e8d7c6'\n",
        # A SyntaxError shows the data it could not read, not a frame's code.
        '  File "/app/settings.py", line 3\n    SECRET_KEY = django-insecure-6\n    ^\n',
        # Lines above a frame line.
        "    password=pw-7\n" + FRAME + "    x = f()\n",
    ],
)  # fmt: skip
def test_a_secret_in_text_a_traceback_shows_is_masked(text: str) -> None:
    """Only code is kept as written: a name inside a string, the locals `capture_locals` adds
    under a frame's source line, what a SyntaxError quotes, and lines that are no frame's
    source are masked as any text."""
    secrets = ("pg-pw-1", "key-val-2", "my-pw-3", "dXNlcjpwdy00", "tok-5", "f9e8d7c6",
               "django-insecure-6", "pw-7")  # fmt: skip
    red = Redactor()(text) or text
    assert not [secret for secret in secrets if secret in red], red


@pytest.mark.parametrize(
    "text",
    ["-eyJ" * 16384, "eyJab-" * 40000, "https://x " + "a." * 65536, "a." * 100000 + "://x",
     "key " + "a:1," * 65536, "pwd=a " * 40000, "Cookie: x " * 30000, "x=" + "A" * 300000 + "=",
     "-----BEGIN PRIVATE KEY-----" * 20000, "-----BEGIN A PRIVATE KEY-----" + " " * 300000,
     "-----BEGIN " + "A " * 100000, "--token " * 40000, "'--token', " * 30000,
     "--" + "-token" * 50000 + " x", "-----BEGIN PRIVATE KEY-----x" + "\\n" * 300000,
     "-----BEGIN PRIVATE KEY-----x" + " a" * 300000, "-----BEGIN PRIVATE KEY-----\n\n  " * 20000,
     '  File "x"\n' + "    pwd=a " * 40000, '  File "x"\n' + "    pwd=a\n" * 40000,
     "x://" * 100000, "https://" + "a1" * 150000 + "@", "https://ghp_" + "a" * 300000 + "@",
     "https://" + "a1" * 20 + ":" + "b" * 300000 + "@", "a://" + "a1" * 20 + ":@" * 100000,
     "https://h/?" + "&sig=" * 60000, "https://h/?" + "&x-amz-signature" * 20000 + "="],
)  # fmt: skip
def test_redacting_a_long_line_reads_it_a_bounded_number_of_times(text: str) -> None:
    """No pattern tries a match from every place of a long run: each of these lines took
    seconds to minutes (`"eyJab-" * 166666`: 237 s) while one did, which would hold the suite
    past its limit; and redacting what was redacted changes nothing."""
    red = Redactor()
    once = red(text) or text
    assert (red(once) or once) == once  # and what is masked stays as it is


KEY_LINES = (
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("-----BEGIN PRIVATE KEY-----\n{0}\n{1}\n-----END PRIVATE KEY-----",
         f"-----BEGIN PRIVATE KEY-----\n{MASK}\n-----END PRIVATE KEY-----"),
        ("-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n\r\n{0}\r\n"
         "-----END RSA PRIVATE KEY-----\r\n",
         f"-----BEGIN RSA PRIVATE KEY-----\r\n{MASK}\r\n-----END RSA PRIVATE KEY-----\r\n"),
        # As a repr or JSON writes it: on one line, its newlines escaped.
        ("{{'k': '-----BEGIN OPENSSH PRIVATE KEY-----\\n{0}\\n"
         "-----END OPENSSH PRIVATE KEY-----\\n'}}",
         f"{{'k': '-----BEGIN OPENSSH PRIVATE KEY-----\\n{MASK}\\n"
         "-----END OPENSSH PRIVATE KEY-----\\n'}"),
        ("  -----BEGIN EC PRIVATE KEY-----\n  {0}\n  -----END EC PRIVATE KEY-----",
         f"  -----BEGIN EC PRIVATE KEY-----\n  {MASK}\n  -----END EC PRIVATE KEY-----"),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{0}\n=njUN\n-----END PGP PRIVATE KEY BLOCK-----",
         f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{MASK}\n-----END PGP PRIVATE KEY BLOCK-----"),
        # An empty one, then one cut short (no end line: masked to the text's end).
        ("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n"
         "{0}\n{1}",
         "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n"
         f"{MASK}"),
        ("key: -----BEGIN PRIVATE KEY-----\n{0}", f"key: -----BEGIN PRIVATE KEY-----\n{MASK}"),
        # Indented deep (a YAML list item's), with Windows' newlines.
        ("        -----BEGIN PRIVATE KEY-----\r\n          {0}\r\n"
         "        -----END PRIVATE KEY-----",
         f"        -----BEGIN PRIVATE KEY-----\r\n          {MASK}\r\n"
         "        -----END PRIVATE KEY-----"),
    ],
)  # fmt: skip
def test_a_private_key_block_is_masked_whatever_holds_it(text: str, masked: str) -> None:
    red, text = Redactor(), text.format(*KEY_LINES)
    once = red(text) or text
    assert once == masked
    assert (red(once) or once) == once


def test_a_private_key_in_json_inside_json_is_masked() -> None:
    """A secret store's value printed whole (JSON holding a key under a name that is no
    secret's, itself a JSON string): its newlines are escaped twice."""
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END PRIVATE KEY-----\n"
    text = json.dumps({"SecretString": json.dumps({"tls_key": pem})})
    masked = Redactor()(text)
    assert masked is not None and KEY_LINES[0] not in masked and KEY_LINES[1] not in masked
    assert "-----BEGIN PRIVATE KEY-----" in masked and "-----END PRIVATE KEY-----" in masked


@pytest.mark.parametrize(
    "text",
    ["-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
     "-----BEGIN PUBLIC KEY-----\nMIIBszCCAVmgAwIBAgIU\n-----END PUBLIC KEY-----",
     "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----", "BEGIN PRIVATE KEY"],
)  # fmt: skip
def test_what_is_no_private_key_block_is_left_alone(text: str) -> None:
    assert Redactor()(text) is None


def test_names_added_are_found_in_text_as_given_or_without_separators() -> None:
    red = Redactor(names=("card_number",))
    assert red("card_number=4111 cardNumber: 4112") == f"card_number={MASK} cardNumber: {MASK}"
    assert red("password=x") is None  # only the names given


def test_ready_compiles_the_names_pattern_for_a_write_at_teardown(monkeypatch: Any) -> None:
    """At interpreter teardown no import works: a redactor made ready masks without one."""
    red = Redactor(names=("card_number",))
    red.ready()
    monkeypatch.setitem(sys.modules, "re", None)  # `import re` fails from here on
    assert red("card_number=4111") == f"card_number={MASK}"


def test_nested_names_are_told_by_their_flattened_path() -> None:
    value = {
        "api": {"key": NAMED, "v": 1},
        "a": {"b": {"api": {"key": NAMED}}},
        "headers": [{"key": "k"}],
        "my": {"pass": {"word": NAMED}},
        "pass": {"x": "y"},
    }
    out = r().nested(value, MAX_DEPTH)
    assert out["api"] == {"key": MASK, "v": 1} and out["a"] == {"b": {"api": {"key": MASK}}}
    assert out["my"] == {"pass": {"word": MASK}} and out["pass"] == {"x": "y"}
    # An array is stored as JSON text, not flattened: its objects' names are their own.
    assert out["headers"] == [{"key": "k"}]
    # A value given its field's name: `api` holding {"key": ...} is the field `api.key`.
    assert r().nested({"key": NAMED}, MAX_DEPTH, "api") == {"key": MASK}
    assert r().nested({"key": "k"}, MAX_DEPTH) == {"key": "k"}
    b, stats = builder()
    entry = only(b.from_record(record_item("r", {"api": {"key": NAMED}})))
    assert entry["api"] == {"key": MASK} and stats.redacted == 1


def test_names_written_as_bytes_are_read_as_names() -> None:
    """ASGI servers (uvicorn, Starlette) keep a request's headers as (bytes, bytes) pairs: a
    program that logs them (`extra={"headers": scope["headers"]}`) gets the same masking as
    with text names, and so does a dict keyed by bytes."""
    headers = [(b"authorization", b"Basic dXNlcjpzZWNyZXQ="), (b"accept", b"*/*"),
               (bytearray(b"Cookie"), b"sessionid=abc123")]  # fmt: skip
    redactor = Redactor()
    redactor.left = 1000
    out = redactor.nested({"headers": headers, "raw": {b"password": b"hunter22", b"user": b"amy"}},
                          MAX_DEPTH)  # fmt: skip
    # Bytes go as their text, as anywhere else; the value of a secret's name is masked.
    assert [pair[1] for pair in out["headers"]] == [MASK, "b'*/*'", MASK]
    assert out["raw"] == {b"password": MASK, b"user": "b'amy'"}
    assert headers[0][1] == b"Basic dXNlcjpzZWNyZXQ="  # the program's own objects: unchanged


def test_json_lines_nested_and_named() -> None:
    b, stats = builder()
    text = json.dumps(
        {"msg": "x", "auth": {"h": f"Bearer {TOKEN}"}, "a": [{"Set-Cookie": NAMED}], "k": AWS_KEY}
    )
    entry = only(b.from_lines([line(text)]))
    assert entry["auth"] == MASK and entry["a"] == [{"Set-Cookie": MASK}] and entry["k"] == MASK
    assert entry["level"] == "INFO" and entry["stream"] == "stdout"
    assert stats.redacted == 3


def test_a_json_line_with_a_lone_surrogate_is_read_as_an_object() -> None:
    """`json.dumps` of a file name that is not UTF-8 (os.fsdecode's surrogate escapes) writes
    `\\udcff`, which orjson refuses: the line was taken for text, and its secret's name masked
    nothing. Read by the standard library's scanner instead, it is an object like any."""
    b, _ = builder()
    text = json.dumps({"msg": "saved", "file": "report\udcff.txt", "password": NAMED})
    entry = only(b.from_lines([line(text)]))
    assert NAMED not in json.dumps(entry)
    assert entry["_msg"] == "saved" and entry["password"] == MASK
    assert entry["file"].startswith("report") and entry["file"].endswith(".txt")


def test_a_json_object_without_a_message_key_is_masked_in_its_message_too() -> None:
    b, _ = builder()
    text = json.dumps({"user": "bob", "creds": {"password": NAMED}, "n": 1})
    entry = only(b.from_lines([line(text)]))
    assert NAMED not in json.dumps(entry)
    assert json.loads(entry["_msg"]) == {"user": "bob", "creds": {"password": MASK}, "n": 1}
    plain = json.dumps({"user": "bob", "n": 1})
    assert only(b.from_lines([line(plain)]))["_msg"] == plain  # nothing to hide: as written


def test_a_json_object_without_a_message_key_with_undecodable_bytes_is_masked_too() -> None:
    """The same, with a lone surrogate (bytes a surrogateescape stream let through) in it:
    orjson refused the masked copy, and the TypeError stopped the sender's group (an
    internal error). It is written with the surrogate replaced and the secret masked."""
    b, _ = builder()
    text = json.dumps({"user": "b\udcff", "creds": {"password": NAMED}})
    entry = only(b.from_lines([line(text)]))
    assert json.loads(entry["_msg"]) == {"user": "b\ufffd", "creds": {"password": MASK}}
    # Two names alike once replaced: Python's text of the masked object, both values in it.
    text = json.dumps(dict(zip(["a\udcfe", "a\udcff", "password"], [1, 2, NAMED])))
    message = only(b.from_lines([line(text)]))["_msg"]
    assert NAMED not in message and MASK in message and "1" in message and "2" in message


def test_records_extras_exceptions_and_stack_info() -> None:
    b, stats = builder()
    extra = {"k": {"a": AWS_KEY, "u": f"https://bob:{URL_PASSWORD}@host/"}, "Token": 5}
    entry = only(b.from_item(record_item(f"msg {AWS_KEY}", extra, exc=True, stack=True)))
    flat = json.dumps(entry)
    assert all(secret not in flat for secret in (AWS_KEY, URL_PASSWORD))
    assert entry["_msg"] == f"msg {MASK}" and entry["Token"] == MASK
    assert entry["k"] == {"a": MASK, "u": f"https://bob:{MASK}@host/"}
    assert MASK in entry["exception.message"] and MASK in entry["stack_info"]
    assert entry["code.line"] == 1 and entry["level"] == "ERROR"  # vlhook's own fields as is
    assert stats.redacted >= 6


def located_record(name: str, thread: str, extra: dict[str, Any]) -> Record:
    rec = logging.LogRecord(name, logging.INFO, "/srv/app.py", 7, "handled", None, None, "run")
    rec.threadName = thread
    rec.__dict__.update(extra)
    return make_record(rec, T_NS, 0, None, logging.INFO, "handled", [])


@pytest.mark.parametrize(
    ("name", "thread", "extra", "env", "masked"),
    [
        ("app", "MainThread", {}, {}, {}),
        (f"app {AWS_KEY}", "MainThread", {}, {}, {"logger": f"app {MASK}"}),
        ("app", f"worker {AWS_KEY}", {}, {}, {"thread": f"worker {MASK}"}),
        ("app", "MainThread", {"logger": f"x {AWS_KEY}"}, {}, {"logger": f"x {MASK}"}),
        ("app", "MainThread", {}, {"VICTORIALOGS_REDACT_KEYS": "file"}, {"code.file": MASK}),
    ],
    ids=["clean", "secret-logger", "secret-thread", "extra-replaces-logger", "redact-key"],
)
def test_a_records_location_fields_are_redacted_when_they_need_it(
    name: str, thread: str, extra: dict[str, Any], env: dict[str, str], masked: dict[str, str]
) -> None:
    """The location fields (logger, code, thread) of most records need nothing done and are
    checked together at once; any that needs redacting still gets it."""
    b, stats = builder(**env)
    entry = only(b.from_item(located_record(name, thread, extra)))
    expected = {"logger": name, "code.file": "/srv/app.py", "code.function": "run"}
    expected["thread"] = thread
    expected.update(extra)
    expected.update(masked)
    assert {key: entry[key] for key in expected} == expected
    assert stats.redacted == len(masked)


def test_uncaught_exceptions() -> None:
    b, _ = builder()
    try:
        raise ValueError(f"with {AWS_KEY}")
    except ValueError as exc:
        error = exc
    entry = only(b.from_item(uncaught(error, T_NS, 0, None, "MainThread")))
    assert AWS_KEY not in json.dumps(entry)


def test_bound_fields_are_redacted_and_stay_as_bound() -> None:
    b, _ = builder()
    bound = {"request": {"headers": {"Authorization": f"Bearer {TOKEN}"}}, "api_key": NAMED}
    snapshot = json.dumps(bound)
    entry = only(b.from_lines([line("plain", bound=bound)]))
    assert entry["request"] == {"headers": {"Authorization": MASK}} and entry["api_key"] == MASK
    assert json.dumps(bound) == snapshot  # the context is shared with later writes


def test_folded_fields_are_redacted_before_folding() -> None:
    b, _ = builder()
    obj: dict[str, Any] = {f"f{i}": {str(j): j for j in range(10)} for i in range(100)}
    obj["zz_nested"] = {"password": NAMED, "key": AWS_KEY}
    entry = only(b.from_lines([line(json.dumps(obj))]))
    assert "vlhook.folded_fields" in entry
    assert NAMED not in json.dumps(entry) and AWS_KEY not in json.dumps(entry)


def test_folded_fields_with_undecodable_bytes_are_folded_as_text() -> None:
    """Fields folded into `vlhook.folded_fields` holding a lone surrogate: orjson refused
    them, and the TypeError stopped the sender's group (an internal error)."""
    b, _ = builder()
    obj: dict[str, Any] = {f"f{i}": {str(j): j for j in range(10)} for i in range(100)}
    obj["zz"] = {str(j): "b\udcff" for j in range(10)}
    entry = only(b.from_lines([line(json.dumps(obj))]))
    assert json.loads(entry["vlhook.folded_fields"])["zz"]["0"] == "b\ufffd"


def test_redact_keys_and_off_from_the_configuration() -> None:
    b, _ = builder(VICTORIALOGS_REDACT_KEYS="Tenant-Ref,,")
    entry = only(b.from_lines([line(json.dumps({"msg": "m", "x": {"tenant_ref": "t-1"}}))]))
    assert entry["x"] == {"tenant_ref": MASK}
    b, stats = builder(VICTORIALOGS_REDACT="off")
    text = json.dumps({"msg": "m", "password": "p", "k": [AWS_KEY]})
    entry = only(b.from_lines([line(text)]))
    assert entry["password"] == "p" and entry["k"] == [AWS_KEY] and stats.redacted == 0


@pytest.mark.parametrize("env", [
    {"VICTORIALOGS_REDACT_KEYS": "msg"}, {"VICTORIALOGS_REDACT_KEYS": "g"},
    {"VICTORIALOGS_REDACT": "sg"}, {"VICTORIALOGS_REDACT": "_m"},
])  # fmt: skip
def test_the_message_field_is_never_masked_or_renamed_by_its_name(env: dict[str, str]) -> None:
    """`_msg` is the message itself (the program's own `_msg` is kept apart): a deny-list name
    that ends its name (`msg`, `g`) or a pattern matching it did mask a line's or record's whole
    message, or rename the field so that the server stored no message, in some paths only. Its
    text is redacted like any other; a field of the program's named like it is masked."""
    b, _ = builder(**env)
    masks_msg = "VICTORIALOGS_REDACT_KEYS" in env
    lines = [
        line("plain msg here"),
        line("plain msg here", bound={"user": "bob"}),
        line(json.dumps({"message": "from json", "msg": "other", "user": "bob"})),
    ]
    entries = [only(b.from_lines([one])) for one in lines]
    entries.append(only(b.from_item(record_item("logged msg", {"user": "bob"}))))
    texts = ["plain msg here", "plain msg here", "from json", "logged msg"]
    if env.get("VICTORIALOGS_REDACT") == "sg":  # a pattern still redacts the message's text
        texts = [text.replace("sg", MASK) for text in texts]
    assert [entry.get("_msg") for entry in entries] == texts
    # The program's `msg` field (the message was its `message`): masked by the name, renamed by
    # the pattern.
    named = f"m{MASK}" if env.get("VICTORIALOGS_REDACT") == "sg" else "msg"
    assert entries[2][named] == (MASK if masks_msg else "other")


def test_a_plain_line_is_left_alone() -> None:
    b, stats = builder()
    assert only(b.from_lines([line("password token secret")]))["_msg"] == "password token secret"
    assert stats.redacted == 0
