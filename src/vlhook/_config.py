"""One frozen configuration, read once from the environment.

A bad value never raises: it produces one warning naming the variable, the value and what was
used instead, and the safe default is used (or shipping is turned off, for a bad URL).
"""

from __future__ import annotations

import os
import stat  # loaded by os already
import sys

# Read at every start-up of an active process: only builtins here (typing, dataclasses and
# urllib.parse would cost more than the whole interpreter start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Callable, Optional, TypeVar

    T = TypeVar("T")

# FATAL is logging's own alias of CRITICAL; TRACE is loguru's lowest level, 5 (a program that
# sets LOG_LEVEL=TRACE for itself wants its TRACE records, which entries name DEBUG).
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40,
          "CRITICAL": 50, "FATAL": 50}  # fmt: skip
SOURCES = ("stdout", "stderr", "logging", "fd")
SECRET_VARIABLES = frozenset({"VICTORIALOGS_HEADERS", "VICTORIALOGS_BEARER_TOKEN"})
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
#: The shortest request timeout: a request takes milliseconds even on loopback, and one that
#: times out after the server stored it is stored twice when sent again. Seconds written for
#: milliseconds (`VICTORIALOGS_TIMEOUT_MS=5`) stored 3,000 of 20,000 lines twice.
MIN_TIMEOUT_MS = 100
# The server skips lines of 256 KiB or more and loses the lines after them: stay well below.
SERVER_LINE_LIMIT = 262_143


class _Frozen:
    """Attributes given at construction, read-only afterwards; secrets never in repr."""

    _secret = ("password", "bearer_token", "headers")

    def __init__(self, **values: object) -> None:
        for name, value in values.items():
            if not hasattr(type(self), name):
                raise TypeError(f"unknown field {name}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'***' if self._hidden(k) and getattr(self, k) else getattr(self, k)!r}"
            for k in sorted(vars(type(self)))
            if not k.startswith("_")
            and not callable(getattr(self, k))
            and not isinstance(getattr(type(self), k), property)
        )
        return f"{type(self).__name__}({shown})"

    def _hidden(self, name: str) -> bool:
        return name in self._secret

    def _values(self) -> tuple[object, ...]:
        names = sorted(n for n in vars(type(self)) if not n.startswith("_"))
        return tuple(getattr(self, n) for n in names if not callable(getattr(self, n)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Frozen)
            and type(other) is type(self)
            and (self._values() == other._values())
        )

    def __hash__(self) -> int:
        return hash(self._values())


class Endpoint(_Frozen):
    """One place to send to: an HTTP(S) server or a local file."""

    scheme: str = ""  # "http", "https" or "file"
    host: str = ""
    port: int = 0
    base_path: str = ""
    username: str = ""
    password: str = ""
    file_path: str = ""

    def _hidden(self, name: str) -> bool:
        # A lone user name may be a token (`https://TOKEN@host`): hidden as a password is.
        return super()._hidden(name) or (name == "username" and not self.password)

    @property
    def display(self) -> str:
        """The endpoint as shown to users: never with credentials."""
        if self.scheme == "file":
            return f"file://{self.file_path}"
        return f"{self.scheme}://{self.host}:{self.port}{self.base_path}"


class Config(_Frozen):
    endpoints: tuple[Endpoint, ...] = ()
    level: int = 20
    capture: frozenset[str] = frozenset({"stdout", "stderr", "logging"})
    stream_fields: tuple[str, ...] = ("container_name", "job")
    fields: tuple[tuple[str, str], ...] = ()
    container_name: str = ""
    job: str = ""
    #: Environment variables set for the processes this one starts (see `_program`).
    handed_down: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token: str = ""
    account_id: str = ""
    project_id: str = ""
    tls_verify: bool = True
    ca_bundle: str = ""
    compression: str = "gzip"
    batch_lines: int = 1000
    batch_bytes: int = 1 << 20
    flush_interval_ms: int = 500
    buffer_bytes: int = 32 << 20
    on_full: str = "drop"
    timeout_ms: int = 5000
    exit_timeout_ms: int = 2000
    spool_dir: str = ""
    spool_max_bytes: int = 64 << 20
    max_line_bytes: int = 64 << 10
    redact: bool = True
    redact_extra: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()
    debug: bool = False
    flush_on_os_exit: bool = False
    in_lambda: bool = False
    #: trace_id, span_id, trace_flags (and trace_state) from TRACEPARENT / TRACESTATE.
    trace: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.endpoints)


def is_enabled(environ: Mapping[str, str]) -> bool:
    """The cheap gate every activation path uses before importing anything."""
    if not environ.get("VICTORIALOGS_URL", "").strip():
        return False
    return environ.get("VICTORIALOGS_DISABLE", "").strip().lower() not in TRUE


#: Variables read as written, quotes and all: a pattern of the user's may mean its quotes, and
#: the switch is read by the activation gates (sitecustomize, the .pth) before this module.
_VERBATIM = frozenset({"VICTORIALOGS_REDACT", "VICTORIALOGS_DISABLE"})


def _quoted(value: str) -> bool:
    return len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]


class _Reader:
    """Reads variables and collects one warning per bad value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.warnings: list[str] = []
        self._unquoted: set[str] = set()

    def raw(self, name: str) -> Optional[str]:
        """The variable's value, stripped; None when unset or blank."""
        value = (self.env.get(name) or "").strip()
        if _quoted(value) and name.startswith("VICTORIALOGS_") and name not in _VERBATIM:
            value = self._unquote(name, value)
        return value or None

    def _unquote(self, name: str, value: str) -> str:
        """`docker run --env-file` keeps an env file's quotes in the value: the URL was then no
        URL, and shipping was off. Said once per variable, without its value."""
        if name not in self._unquoted:
            self._unquoted.add(name)
            self.warnings.append(f"{name} is in quotes, which are part of its value (as "
                                 "`docker run --env-file` passes them); using it without "
                                 "them")  # fmt: skip
        return value[1:-1].strip()

    def warn(self, name: str, value: str, used: str) -> None:
        # Values of variables that carry secrets are never repeated back.
        shown = "<hidden>" if name in SECRET_VARIABLES else repr(value)
        self.warnings.append(f"{name}={shown} is not valid; using {used}")

    def parsed(self, name: str, default: T, parse: Callable[[str], T], shown: str = "") -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, KeyError):
            self.warn(name, value, shown or repr(default))
            return default

    def integer(self, name: str, default: int, minimum: int = 1, maximum: int = 1 << 40) -> int:
        def parse(value: str) -> int:
            number = int(value.replace("_", ""))
            if not minimum <= number <= maximum:
                raise ValueError(value)
            return number

        return self.parsed(name, default, parse, str(default))

    def tenant(self, name: str) -> str:
        """A uint32 tenancy id as text, or "" when unset or bad (the server answers 400 else)."""

        def parse(value: str) -> str:
            if not value.isdigit() or int(value) >= 2**32:
                raise ValueError(value)
            return str(int(value))

        return self.parsed(name, "", parse, "no tenancy header")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(value: str) -> bool:
            low = value.lower()
            if low in TRUE:
                return True
            if low in FALSE:
                return False
            raise ValueError(value)

        return self.parsed(name, default, parse, "on" if default else "off")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(value: str) -> str:
            if value.lower() not in choices:
                raise ValueError(value)
            return value.lower()

        return self.parsed(name, default, parse, default)


_NO_PAIRS: tuple[tuple[str, str], ...] = ()


def parse_pairs(value: str, sep: str = "=") -> tuple[tuple[str, str], ...]:
    """`k=v,k=v` into pairs; an item without `=` or with an empty key is an error."""
    pairs = []
    for item in value.split(","):
        if not item.strip():
            continue
        key, eq, val = item.partition(sep)
        if not eq or not key.strip():
            raise ValueError(item)
        pairs.append((key.strip(), val.strip()))
    return tuple(pairs)


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    from urllib.parse import unquote  # rare: only for escaped characters

    return unquote(text)


def parse_endpoint(url: str) -> Endpoint:
    """`scheme://[user:pass@]host[:port][/base]` or `file:///path`; otherwise ValueError
    saying why (never with the URL: it may hold credentials)."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("it does not start with http://, https:// or file://")
    if scheme == "file":
        path = _unquote(rest.split("?", 1)[0].split("#", 1)[0])
        if not path.startswith("/"):
            raise ValueError("a file:// URL needs an absolute path (file:///dir/name.jsonl)")
        return Endpoint(scheme="file", file_path=path)
    if scheme not in ("http", "https"):
        shown = f"the scheme {scheme!r}" if scheme.isalnum() else "the scheme"
        raise ValueError(f"{shown} is not http, https or file")
    authority, _, path = rest.split("?", 1)[0].split("#", 1)[0].partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    host, port = _host_port(hostport, 443 if scheme == "https" else 80)
    return Endpoint(
        scheme=scheme,
        host=host,
        port=port,
        base_path=("/" + path).rstrip("/") if path else "",
        username=_unquote(username),
        password=_unquote(password),
    )


def _host_port(hostport: str, default_port: int) -> tuple[str, int]:
    """The host and port of `host[:port]` or `[IPv6]:port`, the host as a connection takes it
    (in ASCII); ValueError for one no connection could reach, said at the start rather than
    as a failed delivery after it."""
    if hostport.startswith("["):  # [::1]:9428
        host, closed, rest = hostport[1:].partition("]")
        if not closed:
            raise ValueError("the '[' before its IPv6 address is not closed")
        if rest and not rest.startswith(":"):
            raise ValueError("only ':' and a port may come after ']'")
        port_text = rest[1:]
        if host:
            _check_ipv6(host)
    else:
        host, _, port_text = hostport.partition(":")
        host = _host_name(host)
    if not host:
        raise ValueError("it has no host name")
    port = -1 if port_text else default_port
    if port_text.isascii() and port_text.isdigit():  # int() takes other scripts' digits too
        port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"the port {port_text!r} is not a number from 1 to 65535")
    return host.lower(), port


#: What a host name cannot hold besides spaces and control characters (RFC 3986's reg-name:
#: brackets belong to an IPv6 address; the rest were never allowed). ':', '/', '?', '#' and
#: '@' end the host before it is read.
_NOT_IN_HOST = frozenset('[]"<>\\^`{|}')


def _host_name(host: str) -> str:
    """The host name in ASCII. A name in another script: the resolver, TLS and the Host header
    (ASCII in HTTP/1.1) all take its IDNA form, which the characters are then checked in (it
    maps a non-ASCII space to a space). The codec loads here only (~2 ms), for such names."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("its host name is not a valid host name: IDNA cannot write it "
                             "in ASCII (a label empty or too long, or a character no name may "
                             "hold)") from None  # fmt: skip
    for char in host:
        if char <= " " or char == "\x7f" or char in _NOT_IN_HOST:
            raise ValueError(f"the host name holds {char!r}, which no host name can")
    return host


def _check_ipv6(address: str) -> None:
    import _socket  # C; loaded by delivery anyway, and here only for a URL in brackets

    try:
        _socket.inet_pton(_socket.AF_INET6, address.partition("%")[0])  # not its zone: %25eth0
    except (OSError, ValueError):
        raise ValueError("what is in its brackets is not an IPv6 address") from None


def _safe_url(url: str) -> str:
    """A URL as a warning may show it: credentials and query string replaced (the last "@" ends
    the credentials: a password may hold "@")."""
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    rest, query, _ = rest.partition("?")
    _, at, rest = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{rest}{'?***' if query else ''}"


def _cut_credentials(url: str) -> bool:
    """Whether an "@" stands where no credentials can be: in an item with no scheme, or after
    the path, query or fragment began. A password holding an unescaped ",", "/", "?" or "#"
    does that; parsing the pieces would send (and show) parts of it as a host or a path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "@" in url
    if scheme.lower() == "file":
        return False  # a path, no credentials
    ends = [index for index in map(rest.find, "/?#") if index >= 0]
    return "@" in rest[min(ends, default=len(rest)) :]


def _endpoints(reader: _Reader) -> tuple[Endpoint, ...]:
    raw = reader.raw("VICTORIALOGS_URL") or ""
    if any(_cut_credentials(url.strip()) for url in raw.split(",")):
        reader.warnings.append(
            "VICTORIALOGS_URL is not used (shipping is off): an '@' stands where no credentials "
            "can be, as when a password holds an unescaped ',', '/', '?' or '#'; write those as "
            "%2C, %2F, %3F and %23"
        )
        return ()
    endpoints = []
    for url in raw.split(","):
        if not url.strip():
            continue
        try:
            endpoint = parse_endpoint(url)
        except ValueError as why:
            reader.warnings.append(
                f"VICTORIALOGS_URL item {_safe_url(url.strip())!r} is not a valid URL: {why}; "
                "it is ignored"
            )
            continue
        endpoints.append(_server_of(reader, endpoint, url.strip()))
    if raw and not endpoints:
        reader.warnings.append("VICTORIALOGS_URL has no usable URL; shipping is off")
    return tuple(endpoints)


#: Where the paths of VictoriaLogs' own endpoints begin (`/insert/jsonline`, `/select/vmui`):
#: a URL copied from its docs or its web UI ends with one. Its server's base is before it.
_SERVER_PATHS = ("/insert/", "/select/")
_INSERT_PATH = "/insert/jsonline"


def _server_of(reader: _Reader, endpoint: Endpoint, url: str) -> Endpoint:
    """The endpoint of the server a URL names. vlhook adds `/insert/jsonline` to a base URL:
    one that ended with it sent every batch to `/insert/jsonline/insert/jsonline`, refused
    (400) and dropped. Such a URL is taken as its server's quietly (it is the endpoint's own
    URL); a path of another endpoint of the server is cut, saying so. A query string is never
    sent (the server's parameters have variables of their own): said, not silently dropped."""
    if endpoint.scheme == "file":
        return endpoint
    shown = _safe_url(url)
    if "?" in url.partition("#")[0]:
        reader.warnings.append(
            f"VICTORIALOGS_URL item {shown!r}: its query string is not sent (VictoriaLogs' "
            "parameters come from VICTORIALOGS_STREAM_FIELDS, VICTORIALOGS_FIELDS and "
            "VICTORIALOGS_HEADERS)"
        )
    path = endpoint.base_path + "/"
    at = min((i for i in map(path.find, _SERVER_PATHS) if i >= 0), default=-1)
    if at < 0:
        return endpoint
    server = Endpoint(scheme=endpoint.scheme, host=endpoint.host, port=endpoint.port,
                      base_path=path[:at], username=endpoint.username,
                      password=endpoint.password)  # fmt: skip
    if endpoint.base_path[at:] != _INSERT_PATH:
        reader.warnings.append(
            f"VICTORIALOGS_URL item {shown!r} has the path of one of VictoriaLogs' own "
            f"endpoints; using {server.display} (vlhook adds {_INSERT_PATH})"
        )
    return server


#: The program name a process hands down to the processes it starts (see `_program`).
PARENT_PROGRAM = "VICTORIALOGS_PARENT_PROGRAM"


#: Modules a pool runs with `-m` to start a worker of another program's: joblib's default
#: backend (loky, scikit-learn's too) and loky itself. Their workers were named after them.
WORKER_LAUNCHERS = frozenset({
    "joblib.externals.loky.backend.popen_loky_posix", "loky.backend.popen_loky_posix",
})  # fmt: skip


def _own_program_name() -> str:
    """The script's stem or the `-m` module's name; "" for a process with no program of its
    own (`python -c`, stdin, a pool's worker started by spawn, forkserver or loky)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 == "-m":  # at start-up, before runpy has found the module
        orig = _interpreter_argv()
        module = orig[orig.index("-m") + 1] if "-m" in orig[:-1] else ""
        return "" if module in WORKER_LAUNCHERS else module
    if argv0 in ("", "-c", "-"):
        return ""
    # Normalized, a directory run as a program is named whatever way it was given: `app/`
    # (as a shell completes it) and `.` were named "" (then "python") and "." before.
    path = os.path.normpath(argv0)
    if os.path.basename(path) in (".", ".."):
        path = os.path.normpath(_absolute(path))
    base = os.path.basename(path)
    if base == "__main__.py":
        base = os.path.basename(os.path.dirname(path)) or base
    stem, dot, suffix = base.rpartition(".")
    return stem if dot and stem and suffix in ("py", "pyz", "pyzw") else base  # a zipapp too


def _interpreter_argv() -> list[str]:
    """The interpreter's own command line: `sys.orig_argv` (3.10+), else Linux's record of it
    (Python 3.9 keeps no copy; empty where neither exists)."""
    orig = getattr(sys, "orig_argv", None)
    if orig is not None:
        return list(orig)
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]]


def _program(reader: _Reader) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The program name job and container_name fall back to, and the variables to hand down.

    A process with a program of its own hands its name down in VICTORIALOGS_PARENT_PROGRAM; a
    process with none (a worker of multiprocessing's spawn or forkserver, uvicorn's workers,
    `python -c`) takes its parent's, so it ships to its parent's stream. A different program
    started by the process keeps its own name."""
    own = _own_program_name()
    if own:
        return own, ((PARENT_PROGRAM, own),)
    return reader.raw(PARENT_PROGRAM) or "python", ()


def _level(reader: _Reader) -> int:
    name = "VICTORIALOGS_LOG_LEVEL" if reader.raw("VICTORIALOGS_LOG_LEVEL") else "LOG_LEVEL"
    return reader.parsed(name, 20, lambda v: LEVELS[v.upper()], "INFO")


def _capture(reader: _Reader) -> frozenset[str]:
    def parse(value: str) -> frozenset[str]:
        items = frozenset(item.strip().lower() for item in value.split(",") if item.strip())
        if not items or not items <= set(SOURCES):
            raise ValueError(value)
        return items

    # `fd` takes the place of `stdout` and `stderr` (the fds carry what the streams write).
    return reader.parsed("VICTORIALOGS_CAPTURE", Config.capture, parse, "stdout,stderr,logging")


def _spool_dir(reader: _Reader) -> str:
    value = reader.raw("VICTORIALOGS_SPOOL_DIR")
    if value is not None and value.lower() == "off":
        return ""
    return _absolute(value if value is not None else default_spool_dir(reader.env))


def _absolute(path: str) -> str:
    """A relative path from the directory the process starts in: read or written later, it
    would be taken from the program's directory then (a spool the next run, started where
    this one was, does not find; a CA bundle not found). Joined, not normalized: `link/..`
    stays what the system makes of it. As given when that directory is gone (getcwd
    fails), or empty."""
    if not path or os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError:
        return path


def default_spool_dir(env: Mapping[str, str]) -> str:
    """The first private place of this user that exists: its runtime directory, a cache
    directory in its home, else the temporary directory. The same every run in one
    environment (spooled files are found by the next run), and a few stat calls at most."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and _private(runtime, uid, follow=False, mask=0o077):
        return os.path.join(runtime, "vlhook", "spool")
    home = env.get("HOME", "")
    # Not writable by others: no one else can plant a link to be followed under it.
    if os.path.isabs(home) and _private(home, uid, follow=True, mask=0o022):
        cache = env.get("XDG_CACHE_HOME", "")
        base = cache if os.path.isabs(cache) else os.path.join(home, ".cache")
        return os.path.join(base, "vlhook", "spool")
    tmp = env.get("TMPDIR") or "/tmp"  # noqa: S108 - a per-user directory, checked when opened
    return os.path.join(tmp, f"vlhook-spool-{uid}")


def _private(path: str, uid: int, follow: bool, mask: int) -> bool:
    """`path` is a directory of `uid` that this user can write to and no bit of `mask`
    opens to others."""
    try:
        info = os.stat(path, follow_symlinks=follow)
    except (OSError, ValueError):
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == uid
        and not info.st_mode & mask
        and os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)
    )


def _names(value: str) -> tuple[str, ...]:
    """A comma list of field names; none at all (`,`) is not valid."""
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise ValueError(value)
    return names


def _carried(reader: _Reader, name: str, value: T) -> T:
    """A value that goes into HTTP headers as it is: one HTTP cannot carry (not Latin-1, a
    line break) makes every request fail before it is sent. Said once here, naming the
    variable; kept, so that the entries wait in the spool for the value to be mended."""
    if not value:
        return value
    text = "".join(f"{k}{v}" for k, v in value) if isinstance(value, tuple) else str(value)
    try:
        text.encode("latin-1")
        carried = not any(c in text for c in "\r\n\0")
    except UnicodeEncodeError:
        carried = False
    if not carried:
        reader.warnings.append(f"{name}=<hidden> holds characters HTTP headers cannot carry (only "
                               "Latin-1, no line breaks): no request can be sent; entries are "
                               "kept in the spool")  # fmt: skip
    return value


#: A header name's characters (RFC 9110's token): a server refuses a request with any other
#: (the real one answers 400 "invalid header name" to every batch).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Headers vlhook writes itself or that frame the request, lower-cased. A value of the user's
#: made the real server store nothing, answering 200 to every batch (`Content-Encoding` other
#: than gzip, `Transfer-Encoding`, the form's `Content-Type`), or 400 (a second `Host` or
#: `Content-Length`).
_OWN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "content-type",
    "content-encoding", "expect", "te", "trailer", "upgrade", "keep-alive", "proxy-connection",
})  # fmt: skip


def _header_pairs(value: str) -> tuple[tuple[str, str], ...]:
    pairs = parse_pairs(value)
    if not all(_TOKEN.issuperset(name) for name, _ in pairs):
        raise ValueError(value)  # said without the value: it may hold a secret
    return pairs


def _sendable(reader: _Reader, headers: tuple[tuple[str, str], ...]
              ) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """The user's headers less those that frame the request, each said; VictoriaLogs' debug
    switch said. The others, vlhook's own names among them, replace vlhook's."""
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in _OWN_HEADERS:
            reader.warnings.append(
                f"VICTORIALOGS_HEADERS: {name} is vlhook's to write (it frames every request: "
                "another value can make the server store nothing); left out, the other "
                "headers are sent"
            )
            continue
        if lower == "vl-debug" and value.lower() in ("1", "t", "true"):  # Go's true
            reader.warnings.append("VICTORIALOGS_HEADERS sets VL-Debug: the server logs every "
                                   "entry vlhook sends and stores none of them")  # fmt: skip
        kept.append((name, value))
    return tuple(kept)


#: The fields every entry writes itself (`_entry.PLAIN_KEYS`), and those the server makes.
#: VICTORIALOGS_FIELDS go before an entry's own, and the server keeps the last of a name.
ENTRY_OWN_FIELDS = frozenset({"_time", "_msg", "level", "stream", "_stream", "_stream_id"})


def _addable(reader: _Reader, fields: tuple[tuple[str, str], ...]
             ) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """The user's constant fields less those no entry would show, each said."""
    kept = []
    for name, value in fields:
        if name in ENTRY_OWN_FIELDS:
            reader.warnings.append(f"VICTORIALOGS_FIELDS: every entry has its own {name}; left "
                                   "out, the other fields are added")  # fmt: skip
        else:
            kept.append((name, value))
    return tuple(kept)


#: Stream fields no stream is made of, each with why (seen on the real server): `_msg` makes a
#: stream of every message, the cardinality VictoriaLogs asks to avoid; the server leaves the
#: others out, and alone they put every entry in the stream `{}`.
_NO_STREAM = {
    "_msg": "every entry has its own _msg, and the server would make a stream of each",
    "_time": "the server makes no stream of _time",
    "_stream": "the server makes no stream of _stream",
    "_stream_id": "the server makes no stream of _stream_id",
}


def _stream_fields(reader: _Reader) -> tuple[str, ...]:
    """The user's stream fields less those no stream is made of, each said; the default when
    none is given or left."""
    default = ",".join(Config.stream_fields)
    names = reader.parsed("VICTORIALOGS_STREAM_FIELDS", Config.stream_fields, _names, default)
    kept = tuple(name for name in names if name not in _NO_STREAM)
    instead = "the other fields are used" if kept else f"using the default {default}"
    for name in names:
        if name in _NO_STREAM:
            reader.warnings.append(f"VICTORIALOGS_STREAM_FIELDS: {_NO_STREAM[name]}; left out, "
                                   f"{instead}")  # fmt: skip
    return kept or Config.stream_fields


def _bearer_token(reader: _Reader) -> str:
    """The token alone: the header's whole value pasted (`Bearer abc`) went as
    `Authorization: Bearer Bearer abc`, refused for every batch, and each batch dropped."""
    token = reader.raw("VICTORIALOGS_BEARER_TOKEN") or ""
    scheme, space, rest = token.partition(" ")
    if not (space and scheme.lower() == "bearer" and rest.strip()):
        return token
    reader.warnings.append("VICTORIALOGS_BEARER_TOKEN starts with the scheme 'Bearer ', which "
                           "vlhook writes itself; using the token after it")  # fmt: skip
    return rest.strip()


def _redact(reader: _Reader) -> tuple[bool, tuple[str, ...]]:
    value = reader.raw("VICTORIALOGS_REDACT")
    if value is None or value.lower() in TRUE:
        return True, ()
    if value.lower() in FALSE:
        return False, ()
    import re

    given = value.split(",,") if ",," in value else [value]
    patterns = []
    for pattern in given:
        try:
            re.compile(pattern)
            patterns.append(pattern)
        except re.error:
            others = " and the other patterns given" if len(given) > 1 else " only"
            reader.warn("VICTORIALOGS_REDACT", pattern, f"the built-in patterns{others}")
    return True, tuple(patterns)


def _redact_keys(reader: _Reader, redact: bool) -> tuple[str, ...]:
    value = reader.raw("VICTORIALOGS_REDACT_KEYS")
    if value is None:
        return ()
    if not redact:
        reader.warnings.append(
            "VICTORIALOGS_REDACT_KEYS is ignored: VICTORIALOGS_REDACT=off turns all redaction off"
        )
        return ()
    names = []
    for name in value.split(","):
        if any(char.isalnum() for char in name):
            names.append(name.strip())
        elif name.strip():
            reader.warn("VICTORIALOGS_REDACT_KEYS", name.strip(), "the other names")
    return tuple(names)


def _trace(reader: _Reader) -> tuple[tuple[str, str], ...]:
    """The trace context a launcher handed the process (W3C environment propagation)."""
    parent = reader.raw("TRACEPARENT")
    if parent is None:
        return ()
    from vlhook._tracecontext import traceparent_fields, tracestate

    fields = traceparent_fields(parent)
    if fields is None:
        reader.warn("TRACEPARENT", parent, "no trace id from the environment")
        return ()
    state = reader.raw("TRACESTATE")
    if state is not None:
        valid = tracestate(state)
        if valid is None:
            reader.warn("TRACESTATE", state, "no trace_state")
        else:
            fields["trace_state"] = valid
    return tuple(fields.items())


def load(environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read every variable once. Never raises."""
    env = os.environ if environ is None else environ
    r = _Reader(env)
    in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
    endpoints = _endpoints(r) if is_enabled(env) else ()
    disable = r.raw("VICTORIALOGS_DISABLE")
    if disable is not None and disable.lower() not in TRUE + FALSE:
        r.warnings.append(
            f"VICTORIALOGS_DISABLE={disable!r} is not valid (1, true, yes or on turn vlhook "
            "off; 0, false, no or off leave it on); vlhook stays on"
        )
    redact, redact_extra = _redact(r)
    program, handed_down = _program(r)
    container = (
        r.raw("VICTORIALOGS_CONTAINER_NAME")
        or r.raw("AWS_LAMBDA_FUNCTION_NAME")
        or r.raw("HOSTNAME")
        or program
    )
    headers = r.parsed("VICTORIALOGS_HEADERS", _NO_PAIRS, _header_pairs, "no extra headers")
    headers = _sendable(r, _carried(r, "VICTORIALOGS_HEADERS", headers))
    fields = _addable(r, r.parsed("VICTORIALOGS_FIELDS", _NO_PAIRS, parse_pairs, "no extra fields"))
    return Config(
        endpoints=endpoints,
        level=_level(r),
        capture=_capture(r),
        stream_fields=_stream_fields(r),
        fields=fields,
        container_name=container,
        job=r.raw("VICTORIALOGS_JOB") or ("lambda" if in_lambda else program),
        handed_down=handed_down,
        headers=headers,
        bearer_token=_carried(r, "VICTORIALOGS_BEARER_TOKEN", _bearer_token(r)),
        account_id=r.tenant("VICTORIALOGS_ACCOUNT_ID"),
        project_id=r.tenant("VICTORIALOGS_PROJECT_ID"),
        tls_verify=r.boolean("VICTORIALOGS_TLS_VERIFY", True),
        ca_bundle=_absolute(r.raw("VICTORIALOGS_CA_BUNDLE") or ""),
        compression=r.choice("VICTORIALOGS_COMPRESSION", "gzip", ("gzip", "none")),
        batch_lines=r.integer("VICTORIALOGS_BATCH_LINES", 1000, 1, 1_000_000),
        batch_bytes=r.integer("VICTORIALOGS_BATCH_BYTES", 1 << 20, 1024, 1 << 30),
        flush_interval_ms=r.integer("VICTORIALOGS_FLUSH_INTERVAL_MS", 500, 1, 3_600_000),
        buffer_bytes=r.integer("VICTORIALOGS_BUFFER_BYTES", 32 << 20, 64 << 10),
        on_full=r.choice("VICTORIALOGS_ON_FULL", "drop", ("drop", "block")),
        timeout_ms=r.integer("VICTORIALOGS_TIMEOUT_MS", 5000, MIN_TIMEOUT_MS, 600_000),
        exit_timeout_ms=r.integer("VICTORIALOGS_EXIT_TIMEOUT_MS", 2000, 0, 600_000),
        spool_dir=_spool_dir(r),
        spool_max_bytes=r.integer("VICTORIALOGS_SPOOL_MAX_BYTES", 64 << 20, 0),
        max_line_bytes=r.integer(
            "VICTORIALOGS_MAX_LINE_BYTES", 64 << 10, 1024, SERVER_LINE_LIMIT // 2
        ),
        redact=redact,
        redact_extra=redact_extra,
        redact_keys=_redact_keys(r, redact),
        debug=r.boolean("VICTORIALOGS_DEBUG", False),
        flush_on_os_exit=r.boolean("VICTORIALOGS_FLUSH_ON_OS_EXIT", False),
        in_lambda=in_lambda,
        trace=_trace(r),
        warnings=tuple(r.warnings),
    )
