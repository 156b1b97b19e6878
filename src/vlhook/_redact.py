"""Redaction of secrets before anything leaves the process.

In entries, every string at any depth (keys and values) goes through the patterns, and a field
whose name says it holds a secret has its value replaced, whatever its type. Each built-in
pattern has a literal that any match must contain; the regex runs only when that literal is
present, so a line without secrets costs a few substring tests.

vlhook's own messages are filtered by `_diag.scrub`, with the same patterns and names.
"""

from __future__ import annotations

import sys

from vlhook._codec import number_text, safe_str
from vlhook._patterns import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Sequence, Sized
    from re import Match, Pattern
    from typing import Any, Callable, Optional, Union

    from vlhook._config import Config

    Replacement = Union[str, Callable[[Match[str]], str]]

MASK = "[REDACTED]"
TOO_MANY = "[REDACTED: too many nested values to check]"


def _masked_after(match: Match[str]) -> str:
    """What the first group holds (`Bearer `, `secret_access_key=`), then the mask. A function,
    not the template r"\1...": before Python 3.12 a template imports `re` at each use, and at
    interpreter teardown (a `__del__` that prints) no import works."""
    return match.group(1) + MASK


def _masked_password(match: Match[str]) -> str:
    return match.group(1) + MASK + "@"


def _masked_between(match: Match[str]) -> str:
    return match.group(1) + MASK + match.group(2)


# A URL's `://`, the place its patterns are tried from, after a letter or digit, as a
# scheme ends (a fixed-width look back: the scheme itself is not read; `]+://` in a regular
# expression is none).
_URL = "://"
_AT_URL = r"://(?<=[a-zA-Z0-9]://)"
# After a URL's user name: its password's `:`, which a port's is not (`host:8080/`).
_NO_PORT = r"(?!\d{1,5}(?:[/?#]|$))"

# A signed URL's signature, as a query parameter (after `?`, `&`, `&amp;`'s `;`, or `&`
# escaped as JSON may write it, `\u0026`): 8 or more of the characters signatures are
# written in (hex, base64, %-escapes), so that it ends where a URL's value may (`;`, `,`,
# `)`), and `signature=valid` is none. In a text that holds a URL (`://`): tried from each
# `=`, its name looked back at (~0.7 µs a request line, against ~1 µs for a pattern that
# starts with `[?&]`, a character class tried at every place).
_SIGNATURE_NAMES = ("sig", "signature", "x-amz-signature", "x-goog-signature",
                    "x-oss-signature")  # fmt: skip
_SIGNATURE_AFTER = "|".join(
    f"(?<={before}{name}=)" for name in _SIGNATURE_NAMES for before in ("[?&;]", r"\\u0026")
)
_SIGNED = rf"(?i)=(?:{_SIGNATURE_AFTER})[A-Za-z0-9%~_.+/=-]{{8,}}"  # `[REDACTED]` is none

# Services whose URL carries its secret in the path, before that secret: a Slack incoming
# webhook's (`hooks.slack.com/services/T…/B…/<secret>`, and its workflows' and triggers'), a
# Discord webhook's (`discord.com/api/webhooks/<id>/<token>`) and a Telegram bot's token
# (`api.telegram.org/bot<id>:<secret>/sendMessage`): whoever holds the URL can post as the
# program does. HTTP clients log it whole (httpx: `HTTP Request: POST https://api.telegram.org/
# bot…` at INFO). What follows the secret (a bot's method, `?wait=true`) is kept.
_PATH_SECRET_BEFORE = "|".join((
    # Slack's is the path's last part: `services/T…/B…/[REDACTED]` is left as it is.
    r"hooks\.slack\.com/(?:services|workflows|triggers)/(?:[A-Za-z0-9]+/)+"
    r"(?=[A-Za-z0-9]{8,}(?![\w/-]))",
    r"(?:[a-z]+\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/\d+/",
    r"api\.telegram\.org/(?:file/)?bot(?=\d+:)",
))  # fmt: skip
_PATH_SECRET = rf"({_AT_URL}(?i:{_PATH_SECRET_BEFORE}))[A-Za-z0-9_:-]{{8,}}"

# What may come between a private key's header, its body and its end line: newlines (real, or
# escaped as a repr or JSON writes them, once or more: JSON inside JSON) and indentation.
_KEY_GAP = r"(?:\\+[rn]|\s)*"


# (literals any match contains, pattern, replacement)
_BUILTIN: tuple[tuple[tuple[str, ...], str, Replacement], ...] = (
    (
        ("AKIA", "ASIA", "AIDA", "AROA"),
        # Not `\b`: a key right after a word character (`key_AKIA…`, `\nAKIA…` in a repr)
        # is one too; only more capitals or digits around it make it something else.
        r"(?<![A-Z0-9])(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])",
        MASK,
    ),
    (
        ("ecret", "ECRET"),
        r"(?i)(secret_?access_?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}",
        _masked_after,
    ),
    # Ended by a space, a quote, a delimiter or the text's end: `Bearer expires_in=3600` and
    # `Bearer access_token=[REDACTED]` name no token; nor does a word of 8 to 19 lower-case
    # letters, capitalised or not (`Bearer authentication`): a random token is one in millions.
    (
        ("earer", "EARER"),
        r"(?i)\b(bearer\s+)(?!(?-i:[A-Za-z][a-z]{7,18})(?:[\s\"'<>,;)\]}&]|$))"
        r"[A-Za-z0-9\-._~+/]{8,}=*(?=[\s\"'<>,;)\]}&]|$)",
        _masked_after,
    ),
    # Not after a `-` either: from every `-eyJ` of a long run, a match was tried to its end.
    (("eyJ",), r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", MASK),
    # A PEM private key (PKCS #1 and #8, EC, OpenSSH, PGP): its body, up to the end line or
    # the text's end (a key cut short), masked, the gaps around it kept. The body starts with
    # neither a gap nor "-", so an empty one (a header, then an end line) is none; it ends
    # with no gap (nor an escaped newline's `n`), so that the gap after it is tried from one
    # place per run of gaps: a line costs its length.
    (
        ("PRIVATE KEY",),
        rf"(-----BEGIN [A-Z0-9 ]{{0,40}}PRIVATE KEY(?: BLOCK)?-----{_KEY_GAP})"
        rf"[^\s\\-](?:[\s\S]*?[^\s\\](?<!\\[rn]))??({_KEY_GAP})(?=-----END |\Z)",
        _masked_between,
    ),
    # A URL's password ends at the last "@" before a space or a quote (it may hold "/" and
    # "@": base64 text, an unescaped "@"), as vlhook's own messages are masked; at most 256
    # characters, so that a long run of "x://y:" costs a bounded search each. Its user name
    # may hold an "@" (a mail address, as SMTP and IMAP URLs have), up to the first ":".
    # Each of the URL's patterns starts at its `://` (a scheme's character before it), which
    # the regular expression engine finds as a substring: from every letter of the text,
    # as a pattern that reads the scheme first is tried, an httpx request line cost ~2.6 µs.
    (
        (_URL,),
        rf"({_AT_URL}[^\s/:]*:){_NO_PORT}(?!\[REDACTED\]@)[^\s'\"<>]{{1,256}}@",
        _masked_password,
    ),
    # A token as a URL's user name, as git takes one (`https://<token>@github.com/...`), alone
    # or before a password that says nothing (GitHub's `x-oauth-basic`). A user name is no
    # token unless it is made as one: a known token's prefix (GitHub's; GitLab's, whose
    # newer tokens hold dots), or 40 and more letters, digits, `_` and `-` holding a digit (a
    # classic GitHub token is 40 hex digits, an Azure DevOps one 52 characters or more). A
    # Sentry DSN's key (32 hex digits, public), `git@`, `postgres@`, a long service
    # account's name and a mail address are left alone, and a host is no user (what follows
    # it is no `@`).
    (
        (_URL,),
        rf"({_AT_URL})(?:(?:gh[opsur]_|github_pat_|glpat-)[A-Za-z0-9_.-]{{16,256}}"
        rf"|(?=[A-Za-z_-]{{0,255}}\d)[A-Za-z0-9_-]{{40,256}})(?=@|:{_NO_PORT}[^\s'\"<>]{{0,256}}@)",
        _masked_after,
    ),
    # A signed URL's signature: whoever holds the URL has what it grants until it expires
    # (S3's, Google Cloud Storage's and Alibaba OSS's presigned URLs, CloudFront's signed
    # ones, an Azure shared access signature's `sig`). See _SIGNED.
    ((_URL,), _SIGNED, "=" + MASK),
    # A webhook's or a bot's secret in its URL's path. See _PATH_SECRET_BEFORE.
    ((_URL,), _PATH_SECRET, _masked_after),
)

# Field names that say the value is a secret. A name matches when, lower-cased and without
# "_", "-", "." and spaces, it ends with one of these: `db_password`, `X-Api-Key`,
# `accessToken`, `Set-Cookie`, `aws_secret_access_key`. Drawn from sentry-python's default deny
# list (Sentry's server-side one), less its network addresses (ip_address, remote_addr,
# x_forwarded_for: not credentials, and logs need them), plus common names it lacks. Plurals
# that name other things are left out: `prompt_tokens` is a count.
SECRET_NAMES = (
    "password", "passwords", "passwd", "pwd", "passphrase", "passwordconfirmation",
    "secret", "secrets", "secretkey", "secretaccesskey", "privatekey", "signingkey",
    "encryptionkey",
    "token", "apikey", "auth", "authorization", "bearer", "jwt", "credential", "credentials",
    "cookie", "cookies", "session", "sessionid", "phpsessid", "jsessionid", "connectsid",
    "csrf", "xsrf",
    # Environment variables that hold a password or a key under a name the above miss:
    # `DB_PASS` (`pass` alone would take `bypass`, `compass`), Rails' `RAILS_MASTER_KEY` and
    # `SECRET_KEY_BASE`. Their needles (`pass`, `key`) are searched already: no cost.
    "dbpass", "smtppass", "mailpass", "emailpass", "redispass", "ldappass", "ftppass",
    "masterkey", "secretkeybase",
    # Cloud services' keys under names the above miss: an Azure storage connection string's
    # `AccountKey=`, Service Bus's `SharedAccessKey=`, API Management's
    # `Ocp-Apim-Subscription-Key`, S3-compatible stores' `access_key` (MinIO's). Their needle
    # (`key`) is searched already: no cost.
    "accountkey", "accesskey", "subscriptionkey",
)  # fmt: skip
_SEPARATORS = str.maketrans("", "", "_-. ")
# A secret's name written before its value in text: `password=...`, `"api_key": "..."`, a
# dict's repr `{'token': b'...'}`, `Authorization: Basic ...`, `--client-secret=...`, a query
# string's `&access_token=...`, Ruby's `"password"=>"..."`, `API Key: ...`. Found from the
# places of the names' needles (see _NAME_NEEDLES), so that a line costs its searches and the
# few words they hit, whatever its length:
#  - the name: the word of letters, digits, `_`, `-`, `.` and brackets (`user[password]`)
#    around the needle, with up to two words before it one space apart (`API Key`), told by
#    the deny list as a field's name is (see _text_name);
#  - its separator (_SEPARATOR): `=`, `=>`, or `:` after a quoted name or before a space
#    (`auth:8080`, `app.auth:42` and `DEBUG:app.auth:msg` name nothing);
#  - its value (_VALUE): a quoted string (bytes' and str's prefixes kept), or what runs to the
#    next space, quote, `&`, `,`, `;` or closing bracket, after an authorization scheme
#    (kept); an `Authorization` or a `Cookie` header's runs to the end of the line, after its
#    scheme (`Digest a=1, b=2`, `ApiKey ...`, `a=1; sid=2`). A value masked already
#    (`[REDACTED]`, or asterisks: vlhook's messages show `***`) is left as it is.
_QUOTES = ('\\"', "\\'", '"', "'")  # a quoted value's quotes, kept: escaped ones first
_STRING_PREFIXES = "bBuUrR"  # before a quoted value's quote (not `f`: a template of code)
_SCHEMES = (
    "basic|bearer|digest|token|negotiate|ntlm|apikey|api-key|key|ssws|aws|aws4-hmac-sha256"
    "|splunk|oauth|hmac|signature|mac|sharedkey|sharedaccesssignature"
)
_SCHEME = rf"(?i:{_SCHEMES})[ \t]+"
_WORD_REST = r"[\w.\[\]-]*"
# `=` is not `==` (a version pin `google-auth==2.0`, a comparison `auth == x`).
_SEPARATOR = r"(?:\\?[\"'][ \t]*(?:=>|=(?!=)|:)|[ \t]*(?:=>|=(?!=)|:(?=[ \t])))[ \t]*"
# After a flag (`--password`), as typed or in an argument list's repr or JSON (`', '`); the
# value that follows is no flag itself.
_FLAG_SEPARATOR = r"(?:\\?[\"'],\s*|[ \t]+)(?!\\?[\"']?-)"
_END = r"(?![^\s\"'&,;)\]}])"  # a value's end: a space, a quote, a delimiter, the text's end
#: A value masked already (`[REDACTED]` whole, or asterisks: vlhook's messages show `***`), or
#: one that sets none (`null`, `None`, `false`...): left as it is.
_NO_VALUE = rf"(?:\[REDACTED\]|\*+|null|nil|none|None|true|false|True|False){_END}"
_QUOTED = (
    r"[bBuUrR]{0,2}(?:\\\"[^\\\n]*(?:\\[^\"\n][^\\\n]*)*\\\""
    r"|\\'[^\\\n]*(?:\\[^'\n][^\\\n]*)*\\'"
    r"|\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'"
    r"|[\"'][^\r\n]*)"  # a quote the line does not close: its rest
)
# Not starting with `<` either: an object's repr (`<ClientSession object at 0x7f...>`).
_WORD_VALUE = rf"(?P<value>{_QUOTED}|(?:\[REDACTED\]|[^\s\"'&,;)\]}}\[{{(<])[^\s\"'&,;)\]}}]*)"
_VALUE = rf"(?!(?:{_SCHEME})?{_NO_VALUE})(?:{_SCHEME})?{_WORD_VALUE}"
#: What argparse and click write after a flag in help and usage, in place of its value.
_METAVARS = frozenset({"TEXT", "PATH", "FILE", "FILENAME", "DIRECTORY", "INTEGER", "FLOAT",
                       "STRING", "VALUE", "CHOICE", "UUID", "KEY"})  # fmt: skip
#: After a flag: the next argument, whatever word it is (`--auth basic`).
_FLAG_VALUE = rf"(?!{_NO_VALUE}){_WORD_VALUE}"
_HEADER_VALUE = (
    rf"(?!(?:{_SCHEME})?{_NO_VALUE}[ \t]*(?:[\r\n]|$))(?:{_SCHEME})?"
    rf"(?P<value>{_QUOTED}|[^\s\"'][^\r\n]*)"
)
#: Names whose value is a whole header's: the rest of the line.
_HEADERS = ("authorization", "cookie", "cookies")
_BRACKETS = str.maketrans("", "", "[]")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-[]")
#: How far before a needle a name is read: its end is what the deny list looks at.
_NAME_TAIL = 128
# What the built-in secrets' names hold, lower-cased, however they are written (`X-Api-Key`,
# `accessToken`, `PHPSESSID`): the searches that tell which texts may name one before a value.
# Each costs every line ~65 ns a 100 characters (figure 6), so the names written before their
# values in logs are searched for, not all: `jwt` (a token's own pattern finds its value),
# `credential(s)`, `connect.sid` (a cookie's), `csrf` and `xsrf` have none.
_NAME_NEEDLES = ("pass", "pwd", "ecret", "key", "token", "auth", "earer", "cookie", "sess")
_MAX_NAMES_KEPT = 4096
# A traceback's frame line, and the indentation of the source lines under it (see _code).
_FRAME_LINE = '  File "'
_SOURCE_INDENT = "    "
_LINE_REACH = 4096  # how far back a line's start is looked for
# A line of Python up to a name that is code, not text: no string left open, no comment.
_CODE_BEFORE = r"(?:[^\"'#\\]|\\.|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')*"
#: A verdict of Redactor.name: no secret, not renamed (compared by identity).
NOT_A_SECRET = (False, None)
_SECRET = (True, None)


def field_name(name: str) -> str:
    """A field name as the deny list is matched against it: lower case, no separators."""
    return name.lower().translate(_SEPARATORS)


class Redactor:
    """Applies the built-in patterns and the user's own (`VICTORIALOGS_REDACT`) to text, and
    masks the fields named in the deny list (built-in and `VICTORIALOGS_REDACT_KEYS`)."""

    def __init__(
        self, extra: Sequence[str] = (), builtin: bool = True, names: Sequence[str] = SECRET_NAMES
    ) -> None:
        self._rules: list[tuple[tuple[str, ...], Pattern[str], Replacement]] = []
        self._hint: Optional[Pattern[str]] = None
        literals: list[str] = []
        if builtin:
            self._rules = [(lit, lazy(p), rep) for lit, p, rep in _BUILTIN]
            # One search in C for any of the literals: most lines stop here. (The literals
            # hold no character special to a regular expression.)
            literals = sorted({lit for lits, _, _ in _BUILTIN for lit in lits})
            self._hint = lazy("|".join(literals))
        self._extra = _compiled(extra)
        #: Lower-cased substrings one of which every match of a user pattern holds; None when
        #: one may match without any (see _literals).
        self._extra_needles = _needles_of_patterns(self._extra)
        self.names = tuple(sorted({field_name(name) for name in names} - {""}))
        #: Lower-cased substrings of which any text naming a secret before a value holds one
        #: (see _NAME_NEEDLES, _masked_named); none when no pattern applies.
        self._name_needles = _needles_of(names) if builtin and self.names else ()
        self._text_names: dict[str, Optional[Pattern[str]]] = {}  # see _value_pattern
        self._word_rest = lazy(_WORD_REST)
        self._separator = lazy(_SEPARATOR)
        self._flag_separator = lazy(_FLAG_SEPARATOR)
        self._flag_value_at = lazy(_FLAG_VALUE)
        self._value_at = lazy(_VALUE)
        self._header_at = lazy(_HEADER_VALUE)
        self._code_before = lazy(_CODE_BEFORE)
        #: Substrings of which every text a rule changes holds one, found in the text lower-
        #: cased (EntryBuilder._lowered_needles); None when a user pattern may match anything.
        self.needles = None if self._extra_needles is None else (
            *literals, *self._name_needles, *self._extra_needles)  # fmt: skip
        #: Whether anything can be redacted at all (else only nesting is bounded).
        self.active = bool(self._rules or self._extra or self.names)
        #: Whether a text may need redacting (false: it certainly does not): a few C calls
        #: unless a user pattern may match anything.
        self.may_match: Callable[[str], Any] = (
            _anything if self._extra_needles is None
            else self._may_match_all if self._extra_needles
            else self._may_match if self._hint else _nothing
        )  # fmt: skip
        #: Strings and fields changed by `name`/`nested` users since the caller last reset it.
        self.hits = 0
        #: How many more nested values `nested` examines before it stops (set by the caller).
        self.left = 0
        #: Field name -> what `name` said of it (callers may look here first: a hot path).
        self.verdicts: dict[str, tuple[bool, Optional[str]]] = {}
        #: (path, name) -> the flattened name, and whether it names a secret (see _flattened).
        self._under: dict[tuple[str, str], tuple[str, bool]] = {}
        self._path: set[int] = set()  # containers being walked: a value inside itself is a loop

    def ready(self) -> None:
        """Compile every pattern now (each built-in one compiles at the first text holding its
        literal): at interpreter teardown, where a late write may still come, no import
        works."""
        literals = sorted({lit for lits, _, _ in _BUILTIN for lit in lits})
        self(" ".join(literals))
        if self._name_needles:
            for pattern in (self._word_rest, self._separator, self._flag_separator,
                            self._flag_value_at, self._value_at, self._header_at,
                            self._code_before):  # fmt: skip
                pattern.search("")

    def __call__(self, text: str) -> Optional[str]:
        """The redacted text, or None when nothing matched (the common, cheap case)."""
        out = text
        if self._hint is not None and self._hint.search(text):
            for literals, pattern, replacement in self._rules:
                for literal in literals:
                    if literal in out:
                        out = pattern.sub(replacement, out)
                        break
        if self._name_needles and _may_name_a_value(text):
            out = self._masked_named(out)
        for pattern in self._extra:
            out = pattern.sub(_masked_if_any, out)
        return None if out == text else out

    def _may_match(self, text: str) -> Any:
        return self._hint.search(text) or self._names_in(text)  # type: ignore[union-attr]

    def _may_match_all(self, text: str) -> bool:
        """_may_match for the built-in rules, then theirs_may_match for the user's patterns."""
        builtin = self._hint is not None and bool(self._may_match(text))
        return builtin or self.theirs_may_match([text])

    def theirs_may_match(self, texts: list[str]) -> bool:
        """Whether a pattern of the user's may match one of these texts: one of its needles is
        in it, or any text for a pattern without needles."""
        needles = self._extra_needles
        if needles is None:
            return True
        return any(needle in lowered for lowered in map(str.lower, texts) for needle in needles)

    def _names_in(self, text: str) -> bool:
        """Whether the text may name a secret before a value: a separator or a flag, and a
        built-in name's needle (or a name added) in the lower-cased text."""
        if not _may_name_a_value(text):
            return False
        lowered = text.lower()
        return any(needle in lowered for needle in self._name_needles)

    def _masked_named(self, text: str) -> str:
        """The text with every value named as a secret's masked (see _NAME_NEEDLES), its
        quotes and prefix kept. Each word is told once, and a name inside a value masked
        already not at all: a line costs its length, not its square."""
        lowered, hits = _lowered(text), []
        for needle in self._name_needles:  # a loop, not a generator: ~2 µs less a line
            at = lowered.find(needle)
            while at >= 0:
                hits.append(at)
                at = lowered.find(needle, at + 1)
        hits.sort()
        frames = _FRAME_LINE in text  # a traceback's: its source lines are code (see _code)
        parts: list[str] = []
        done = told = 0  # masked up to `done`; words told up to `told`
        for at in hits:
            if at < told:
                continue
            told = self._word_rest.match(text, at).end()  # type: ignore[union-attr]
            value = self._named_value(text, at, told)
            if value is not None and not (frames and self._code(text, at, told, value[0])):
                start, told = value
                parts += [text[done:start], *_masked_value(text[start:told])]
                done = told
        return "".join([*parts, text[done:]]) if parts else text

    def _named_value(self, text: str, at: int, end: int) -> Optional[tuple[int, int]]:
        """Where the value after the name that ends at `end` is, when the name (the words up
        to there, see _name_start) is a secret's. The separator first: most words a needle
        hits (`monkey`, `passed`) have none."""
        separator = self._separator.match(text, end)
        flag = _word_start(text, at, max(0, at - _NAME_TAIL))
        if text.startswith("--", flag):  # a flag is one word, whatever the next ones hold
            if separator is None:
                return self._flag_value(text, flag, end)
            if ":" in separator.group():  # a flag named in a message: `argument --token: ...`
                return None
        for _ in range(2):  # or after one or two words more: `Session ID: ...`
            if separator is not None or text[end : end + 1] != " ":
                break
            end = self._word_rest.match(text, end + 1).end()  # type: ignore[union-attr]
            separator = self._separator.match(text, end)
        if separator is None:
            return None
        pattern = self._value_pattern(text[max(_name_start(text, at), end - _NAME_TAIL) : end])
        if pattern is None:
            return None
        found = pattern.match(text, separator.end())
        return None if found is None else found.span("value")

    def _flag_value(self, text: str, start: int, end: int) -> Optional[tuple[int, int]]:
        """Where the value after a command line's flag that names a secret is (the flag is
        `text[start:end]`): `--password hunter2`, or an argument list's `'--password',
        'hunter2'` as a repr or JSON writes it. None when the flag says no (`--no-password`),
        the next argument is a flag too (`--token --debug`) or there is none, or it is what
        help and usage lines write in its place (`--api-key API_KEY`, `--token TEXT`)."""
        flag = text[start:end]
        separator = self._flag_separator.match(text, end)
        if separator is None or flag.startswith("--no-") or self._value_pattern(flag) is None:
            return None
        found = self._flag_value_at.match(text, separator.end())
        if found is None:
            return None
        value = found.group("value")
        if value == "/" or (value.isupper() and self._placeholder(value, flag)):
            return None  # help: `--auth / --no-auth`, `--auth-token TOKEN`, `--key TEXT`
        return found.span("value")

    def _code(self, text: str, at: int, end: int, value_at: int) -> bool:
        """Whether the value at `value_at`, after a name around `at` (its word ends at `end`),
        is code rather than a value: no literal (a string, bytes, a number), after a name in
        the code (not in a string or a comment) of a line of Python a traceback shows. There a
        name is a variable's (`session = requests.Session()`, `auth=auth`), and only a literal
        can hold a secret (`password="hunter2"`); an f-string is a template of code (`f"Bearer
        {token}"`). What a string holds is text (`connect("user=app password=...")`), as a
        comment is; a string that is the name alone is code (a key, an argument:
        `{"Authorization": f"..."}`, `"--password", password`)."""
        head = text[value_at : value_at + 5]  # room for a prefix and an escaped quote
        if _opening_quote(head) or head[:1].isdigit():
            return False
        start = _in_source_line(text, at)
        if start is None:
            return False
        name = _word_start(text, at, start)
        quote = text[name - 1 : name]
        if quote in _QUOTES and text.startswith(quote, end):
            name -= 1  # the string's own opening quote: what comes before it is code or not
        return self._code_before.fullmatch(text, start, name) is not None

    def _placeholder(self, value: str, flag: str) -> bool:
        """Whether capitals after a flag are what help writes in its value's place: click's
        type (`TEXT`), argparse's name for it (`API_KEY`), or a secret's name (`TOKEN`)."""
        name = field_name(value)
        return value in _METAVARS or name == field_name(flag) or name in self.names

    def _value_pattern(self, name: str) -> Optional[Pattern[str]]:
        """What reads the value after a name written in text: None when the name is no
        secret's (see _text_name). Remembered: a program writes few names, many times."""
        try:
            return self._text_names[name]
        except KeyError:
            pass
        flat = _text_name(name)
        pattern = None
        if flat.endswith(self.names):
            pattern = self._header_at if flat.endswith(_HEADERS) else self._value_at
        if len(self._text_names) >= _MAX_NAMES_KEPT:
            self._text_names.clear()
        self._text_names[name] = pattern
        return pattern

    def name(self, key: str) -> tuple[bool, Optional[str]]:
        """Whether a field of this name holds a secret, and the name redacted (None: as is).
        Remembered: a program uses few field names, many times."""
        verdict = self.verdicts.get(key)
        if verdict is None:
            secret = field_name(key).endswith(self.names)
            renamed = self(key)
            verdict = NOT_A_SECRET if not secret and renamed is None else (secret, renamed)
            if len(self.verdicts) >= _MAX_NAMES_KEPT:
                self.verdicts.clear()
            self.verdicts[key] = verdict
        return verdict

    def secret_under(self, path: str, name: str) -> bool:
        """Whether a field `name` inside an object stored at `path` (the names of the objects
        it is in, each as field_name makes it, run together; "" at the top) holds a secret by
        the name the server stores it under: it flattens `{"api": {"key": ...}}` into the
        field `api.key`, which names a secret though neither `api` nor `key` does."""
        return self._flattened(path, name)[1]

    def path_under(self, path: str, key: Any) -> str:
        """The path of an object stored as the field `key` at `path` (see secret_under); a
        key that is not text leaves no name the server flattens into."""
        return self._flattened(path, key)[0] if key.__class__ is str else ""

    def _flattened(self, path: str, name: str) -> tuple[str, bool]:
        """Remembered per (path, name): a program nests few names, many times."""
        key = (path, name)
        known = self._under.get(key)
        if known is None:
            flat = path + field_name(name)
            known = (flat, bool(path) and flat.endswith(self.names))
            if len(self._under) >= _MAX_NAMES_KEPT:
                self._under.clear()
            self._under[key] = known
        return known

    def nested(self, value: Any, depth: int, name: str = "") -> Any:
        """`value` with every string redacted and every secret-named field (or name-value pair)
        masked; the same object when nothing changed (the program's own objects are never
        modified). `name`: the field that holds it, when it is one (an object's names are then
        told by their flattened path, see secret_under). Nesting deeper than `depth` becomes
        text; past `self.left` values, the rest is not examined but replaced. Objects the
        encoder would write as text are made text here, and redacted; so are NaN and the
        infinities, which orjson would write as null (an integer past 64 bits is left to the
        encoder: `_codec.dumps_carried`)."""
        self._path.clear()
        return self._value(value, depth, field_name(name))

    def _value(self, value: Any, depth: int, path: str = "") -> Any:
        """`path`: where an object here is stored once flattened (see secret_under); "" at the
        top, and inside arrays, which the server stores as JSON text."""
        kind = type(value)
        if kind is str:
            return self._text(value)
        if kind is int or kind is bool or value is None:
            return value
        if isinstance(value, dict):
            return self._dict(value, depth, path)
        if isinstance(value, (list, tuple)):
            return self._list(value, depth)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, float):
            return value if value - value == 0 else number_text(value)
        if isinstance(value, int) or _written_as_itself(value):
            return value
        fields = _dataclass_fields(value)
        if fields is not None:
            return self._dict(fields, depth, path)
        return self._text(safe_str(value))

    def _text(self, text: str) -> str:
        clean = self(text)
        if clean is None:
            return text
        self.hits += 1
        return clean

    def _enter(self, value: Sized, depth: int, cycle: str) -> Optional[str]:
        """Before a container's items are looked at: what stands for it instead (a cycle, too
        deep, too many values in all), or None once it is entered (leave with _path.discard)."""
        if id(value) in self._path:
            return cycle
        if depth <= 0:
            return self._too_deep(value)
        if len(value) > self.left:
            self.hits += 1
            return TOO_MANY
        self.left -= len(value)
        self._path.add(id(value))
        return None

    # _dict and _list test leaves inline (most values are short strings and numbers that
    # nothing matches): a Python call per leaf would double the cost of a nested value. A
    # float that is NaN or an infinity is the one number made text here (see nested).

    def _dict(self, value: dict[Any, Any], depth: int, path: str) -> Any:
        instead = self._enter(value, depth, "{...}")
        if instead is not None:
            return instead
        verdicts, may_match = self.verdicts, self.may_match
        out = None
        for key, item in value.items():
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self._name_of(key)
            if verdict is NOT_A_SECRET and path and key.__class__ is str \
                    and self.secret_under(path, key):  # fmt: skip
                verdict = _SECRET
            if verdict is NOT_A_SECRET:
                kind = type(item)
                if kind is str:
                    if not may_match(item):
                        continue
                    clean = self._text(item)
                elif kind is int or kind is bool or item is None:
                    continue
                elif kind is float:
                    if item - item == 0:
                        continue
                    clean = number_text(item)  # NaN, an infinity
                else:
                    clean = self._value(item, depth - 1, self.path_under(path, key))
                if clean is item:
                    continue
            else:
                secret, renamed = verdict
                # A secret's name holding null or a flag holds nothing to hide (`{"token":
                # null}`), as `token=None` in text: left as it is.
                secret = secret and not holds_nothing(item)
                clean = MASK if secret else self._value(item, depth - 1, self.path_under(path, key))
                self.hits += secret
                if clean is item and renamed is None:
                    continue
                if renamed is not None:
                    out = dict(value) if out is None else out
                    del out[key]
                    key = renamed
                    self.hits += 1
            out = dict(value) if out is None else out
            out[key] = clean
        self._path.discard(id(value))
        return value if out is None else out

    def _list(self, value: Sequence[Any], depth: int) -> Any:
        instead = self._enter(value, depth, "[...]")
        if instead is not None:
            return instead
        may_match = self.may_match
        out = None
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if not may_match(item):
                    continue
                clean = self._text(item)
            elif kind is int or kind is bool or item is None:
                continue
            elif kind is float:
                if item - item == 0:
                    continue
                clean = number_text(item)  # NaN, an infinity
            else:
                clean = self._value(item, depth - 1)
            if clean is not item:
                out = list(value) if out is None else out
                out[index] = clean
        self._path.discard(id(value))
        first = value[0] if len(value) == 2 else None
        if first is not None and self._name_of(first)[0]:
            # A (name, value) pair, as in a list of headers: [("Authorization", "...")], or
            # ASGI's [(b"authorization", b"...")].
            out = list(value) if out is None else out
            out[1] = MASK
            self.hits += 1
        return value if out is None else out

    def _name_of(self, key: Any) -> tuple[bool, Optional[str]]:
        """`name` for a dict's key or a pair's first item, whatever it is: bytes are read as a
        name too (ASGI servers keep headers as pairs of bytes), never renamed, only their value
        masked; anything else names nothing."""
        if isinstance(key, str):
            return self.name(key)
        if not isinstance(key, (bytes, bytearray)):
            return NOT_A_SECRET
        return _SECRET if self.name(key.decode("latin-1"))[0] else NOT_A_SECRET

    def _too_deep(self, value: Any) -> str:
        """Nesting past the depth limit goes as text: no field names there to mask by, so
        text that mentions one is masked whole."""
        text = self._text(safe_str(value))
        normalized = field_name(text)
        if any(name in normalized for name in self.names):
            self.hits += 1
            return MASK
        return text


def holds_nothing(value: Any) -> bool:
    """A secret-named field's value that hides no secret: null, or a flag."""
    return value is None or value is True or value is False


def _lowered(text: str) -> str:
    """The text lower-cased, character for character (where lower() makes two of one: `İ`)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else "".join(c.lower()[:1] for c in text)


def _name_start(text: str, at: int) -> int:
    """Where the name around `at` begins: its word, and up to two words before it one space
    apart (`API Key`, `Secret Access Key`); no further back than _NAME_TAIL."""
    floor, start, words = max(0, at - _NAME_TAIL), at, 0
    while True:
        start = _word_start(text, start, floor)
        words += 1
        if words == 3 or start - 2 < floor or text[start - 1] != " " \
                or text[start - 2] not in _NAME_CHARS:  # fmt: skip
            return start
        start -= 1


def _word_start(text: str, at: int, floor: int) -> int:
    """Where the word of name characters around `at` begins, no further back than `floor`."""
    while at > floor and text[at - 1] in _NAME_CHARS:
        at -= 1
    return at


def _in_source_line(text: str, at: int) -> Optional[int]:
    """Where the line holding `at` starts, when it is the line of source a Python traceback
    shows for a frame: four spaces in, right under the frame's `  File "...", line N, in f`.
    Not a line under that one: `capture_locals` prints the frame's locals there, reprs that
    hold values (`url = 'https://h/?api_key=...'`); nor what a SyntaxError quotes (its
    `File` line names no function): the data it could not read, not code."""
    start = _line_start(text, at)
    if start <= 0 or not text.startswith(_SOURCE_INDENT, start):
        return None
    above = _line_start(text, start - 1)
    if above < 0 or not text.startswith(_FRAME_LINE, above):
        return None
    frame = text[above : start - 1]
    return start if '", line ' in frame and ", in " in frame else None


def _line_start(text: str, at: int) -> int:
    """Where the line holding `at` starts: -1 when it starts more than _LINE_REACH characters
    before it, which no line of code a traceback shows does (so that a text of many names on
    one long line costs each of them a bounded search, not one to the text's start)."""
    floor = max(0, at - _LINE_REACH)
    newline = text.rfind("\n", floor, at)
    return newline + 1 if newline >= 0 or floor == 0 else -1


def _may_name_a_value(text: str) -> bool:
    """Whether the text holds what a name is written before a value with: a separator, or a
    command line's flag."""
    return "=" in text or ":" in text or "--" in text


def _text_name(name: str) -> str:
    """A name written in text as the deny list is matched against it: as field_name makes it,
    without brackets (`user[password]`) and trailing digits (Django's `password2`)."""
    return field_name(name).translate(_BRACKETS).rstrip("0123456789")


def _masked_value(value: str) -> tuple[str, str, str]:
    """What stands for a value: its prefix and quotes (`b'`...`'`) around the mask."""
    quote = _opening_quote(value)
    prefix = value[: len(value) - len(value.lstrip(_STRING_PREFIXES))] if quote else ""
    return prefix + quote, MASK, quote


def _opening_quote(value: str) -> str:
    """A quoted value's opening quote, after its prefix (`b'`, `r"`, a repr's `\\"`); "" when
    the value is not quoted (nor is a quote with nothing after it)."""
    body = value.lstrip(_STRING_PREFIXES)
    return next((q for q in _QUOTES if len(body) > len(q) and body.startswith(q)), "")


def _needles_of(names: Sequence[str]) -> tuple[str, ...]:
    """The needles that find these names in lower-cased text: the first of _NAME_NEEDLES a
    name holds; else, for a name the user added, the name as given and without separators
    (a built-in one without a needle is not searched for)."""
    needles: set[str] = set()
    for name in names:
        flat = field_name(name)
        needle = next((needle for needle in _NAME_NEEDLES if needle in flat), None)
        if needle is not None:
            needles.add(needle)
        elif name not in SECRET_NAMES:
            needles.update({name.lower(), flat} - {""})
    return tuple(sorted(needles))


def _anything(text: str) -> bool:
    return True


def _compiled(patterns: Sequence[str]) -> list[Pattern[str]]:
    if not patterns:
        return []
    import re  # only with the user's own patterns (VICTORIALOGS_REDACT)

    return [re.compile(p) for p in patterns]


def _needles_of_patterns(patterns: list[Pattern[str]]) -> Optional[tuple[str, ...]]:
    """The needles of the user's patterns together (none without patterns); None when one
    of them has none."""
    if not patterns:
        return ()
    from vlhook._literals import needles_of

    found: set[str] = set()
    for pattern in patterns:
        needles = needles_of(pattern)
        if needles is None:
            return None
        found.update(needles)
    return tuple(sorted(found))


def _masked_if_any(match: Match[str]) -> str:
    """A user pattern's match masked, unless it is empty: `x*` (meant as `x+`), `(?:a)?` or
    `\\b` match an empty text at every place, and each line was stored as
    `[REDACTED]h[REDACTED]e[REDACTED]l...`."""
    return MASK if match.end() > match.start() else ""


def _nothing(text: str) -> bool:
    return False


def _written_as_itself(value: Any) -> bool:
    """Dates, times, UUIDs and enums: the encoder writes them in its own form, not as text."""
    enum = sys.modules.get("enum")  # not loaded: no value can be an enum
    if enum is not None and isinstance(value, enum.Enum):
        return True
    datetime, uuid = sys.modules.get("datetime"), sys.modules.get("uuid")
    return (datetime is not None and isinstance(value, (datetime.date, datetime.time))) or (
        uuid is not None and isinstance(value, uuid.UUID)
    )


def _dataclass_fields(value: Any) -> Optional[dict[str, Any]]:
    """A dataclass instance as the encoder writes it (an object of its fields), else None."""
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is None or not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    return {field.name: getattr(value, field.name, None) for field in dataclasses.fields(value)}


def redactor_for(config: Config) -> Optional[Redactor]:
    """The redaction a configuration asks for: the built-ins, its patterns and its secret
    names; None with VICTORIALOGS_REDACT=off."""
    if not config.redact:
        return None
    return Redactor(config.redact_extra, names=(*SECRET_NAMES, *config.redact_keys))


def examiner_for(config: Config) -> Redactor:
    """What examines an entry's values: the configuration's redaction, or with
    VICTORIALOGS_REDACT=off a redactor of no patterns and no names, whose walk still bounds
    nesting and makes text of what the encoder cannot write (NaN, objects)."""
    return redactor_for(config) or Redactor(builtin=False, names=())


_default: Optional[Redactor] = None


def default_redactor() -> Redactor:
    """The built-in patterns alone (for vlhook's own messages)."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default


def redact_text(text: str) -> str:
    """The built-in patterns applied to one text."""
    return default_redactor()(text) or text
