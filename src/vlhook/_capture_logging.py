"""Capture of logging records, whatever the program's handlers and propagation.

`Logger.callHandlers` is where every emitted record of every logger passes exactly once
(propagating or not, with or without handlers, including Python's last-resort output). There
the record is captured, and while its handlers run, anything they print to a captured stream
is not captured again as text: a JSON line a handler prints is merged into the record's entry.
Logger levels are the program's: vlhook never changes them.
"""

from __future__ import annotations

import _thread
import logging
import sys

from vlhook import _capture_streams, _context
from vlhook._capture_streams import NOT_SUPPRESSED, NotCaptured, suppressed
from vlhook._captures import record as make_record
from vlhook._diag import internal_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._captures import Record

    Put = Callable[[Record, int], None]

_original: Optional[Callable[[logging.Logger, logging.LogRecord], None]] = None

# Fallback, when logging's source cannot be had (see _in_place): a wrapper compiled under
# logging's own file name, so that logging's report of a failing handler, which prints the
# call stack from the first frame outside its directory, does not print it from ours.
_WRAPPER = """
def callHandlers(self, record):
    state = enter(record)
    try:
        original(self, record)
    finally:
        leave(record, state)
"""


#: logging's own ways of handing records to handlers after the logging call returned (a
#: `QueueListener`'s thread, 3.12's `queue_handler` configuration among them; a
#: `MemoryHandler`'s flush, by the program or at logging's shutdown): what the handlers print
#: then is the text of records captured where they were logged, and was stored again as lines.
LATER = (("QueueListener", "handle"), ("MemoryHandler", "flush"))
_later: dict[tuple[str, str], Callable[..., Any]] = {}  # (class, method) -> logging's own

# Compiled under logging.handlers' file name, as _WRAPPER is: logging's report of a failing
# handler prints the call stack from the first frame outside its directory, which this is not.
_LATER_WRAPPER = """
def {method}(self, *args, **kwargs):
    if handling():  # within a record's handling already: that record collects what is printed
        return original(self, *args, **kwargs)
    with NotCaptured():
        return original(self, *args, **kwargs)
"""


def hook_handlers(module: Any) -> None:
    """When `logging.handlers` loads: the methods of LATER, run with what their thread prints
    not captured as text (see NotCaptured)."""
    if _later:  # installed once
        return
    for class_name, method in LATER:
        owner = getattr(module, class_name, None)
        original = getattr(owner, method, None)
        if original is None:
            continue
        _later[(class_name, method)] = original
        setattr(owner, method, _uncaptured(original, method, module.__file__ or "logging"))


def _uncaptured(original: Callable[..., Any], method: str, filename: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"original": original, "NotCaptured": NotCaptured,
                                 "handling": _handling, "__name__": __name__}  # fmt: skip
    exec(compile(_LATER_WRAPPER.format(method=method), filename, "exec"), namespace)  # noqa: S102
    wrapper: Callable[..., Any] = namespace[method]
    wrapper.__qualname__, wrapper.__doc__ = original.__qualname__, original.__doc__
    return wrapper


def _handling() -> bool:
    """Whether this thread's writes are kept from capture already (`suppressed` is read each
    time: fd capture replaces it)."""
    return _thread.get_ident() in _capture_streams.suppressed


def install(put: Put, level: int) -> None:
    global _original
    if _original is not None:
        return

    def enter(record: logging.LogRecord) -> tuple[Any, ...]:
        ident = _thread.get_ident()  # as the program has it now: see _sync
        # A handler that logs: the outer state comes back after.
        outer = suppressed.get(ident, NOT_SUPPRESSED)
        texts: list[str] = []
        levelno, message = 0, ""
        try:
            # Snapshot before handlers run: some (awslambdaric's JSON one) rewrite the level.
            levelno = record.levelno
            if levelno >= level:
                try:  # message_of's work, without its frame on every record
                    message = record.getMessage()
                except Exception as error:
                    message = _unformattable(record, error)
        except Exception as exc:
            internal_error("capture.logging", exc)
        suppressed[ident] = texts
        return ident, outer, texts, levelno, message

    def leave(record: logging.LogRecord, state: tuple[Any, ...]) -> None:
        # The capture is made here rather than in a helper: one frame less on every record.
        ident, outer, texts, levelno, message = state
        if outer is NOT_SUPPRESSED:
            suppressed.pop(ident, None)
        else:
            suppressed[ident] = outer
        if levelno < level:
            return
        try:
            t_ns = int(record.created * 1e9)
            put(make_record(record, t_ns, ident, _context.get(), levelno, message, texts),
                levelno)  # fmt: skip
        except Exception as exc:
            internal_error("capture.logging", exc)

    original = logging.Logger.callHandlers
    hooked = _in_place(original, enter, leave) or _wrapper(original, enter, leave)
    _original = original
    logging.Logger.callHandlers = hooked  # type: ignore[method-assign]


#: The most lines a function's source is looked for in, from its `def`.
MAX_LINES = 200
#: The names the lines added to the function bring in (besides its `record` argument).
ADDED = frozenset({"enter", "leave", "state"})


def _in_place(original: Any, enter: Any, leave: Any) -> Optional[Callable[..., None]]:
    """logging's own `callHandlers`, compiled again from its source with `enter` before its
    body and `leave` after it, every line of it on the line it has in logging: one frame, as
    without vlhook, where a wrapper is a second one. A handler of the program's that fails
    makes logging print the call stack from that handler's frame out, logging's frames
    included: a wrapper's frame showed there as two lines more. None when the source cannot
    be had (a stdlib zipped without it) or does not compile to the running function's code
    (another copy, or already wrapped by a library). ~0.5 ms, once, when logging loads."""
    from types import FunctionType  # loaded by logging already (through re and enum)

    try:
        code = original.__code__
        names = {*code.co_names, *code.co_varnames, *code.co_freevars}
        if ADDED & names or "record" not in code.co_varnames[: code.co_argcount]:
            return None  # the body's own names would be ours, or it takes no record
        with open(code.co_filename, encoding="utf-8") as fh:
            lines = _function_lines(fh.read(), code.co_firstlineno, code.co_name)
        source = _sources(lines, code.co_firstlineno, code.co_name)
        module = compile(source, code.co_filename, "exec", dont_inherit=True)  # not our future
        made = {c.co_name: c for c in module.co_consts if hasattr(c, "co_name")}
        if made[code.co_name].co_code != code.co_code:
            return None
        function: Callable[..., None] = FunctionType(made["_hooked"], original.__globals__)(
            enter, leave)  # fmt: skip
    except Exception:  # any surprise: the wrapper instead
        return None
    function.__qualname__, function.__doc__ = original.__qualname__, original.__doc__
    return function


def _function_lines(text: str, first: int, name: str) -> list[str]:
    """The source's lines from the `def` of `name` on line `first` (1-based) on: found with C
    searches, not by splitting the whole file (~2,000 lines for logging)."""
    at = text.find(f"def {name}(")
    while at >= 0:
        begin = text.rfind("\n", 0, at) + 1
        if text.count("\n", 0, begin) + 1 == first:
            return text[begin:].split("\n", MAX_LINES)
        at = text.find(f"def {name}(", at + 1)
    raise ValueError(f"no def {name} on line {first}")


def _sources(lines: list[str], first: int, name: str) -> str:
    """One module's source: a maker `_hooked(enter, leave)` returning the function of `lines`
    (its `def` first) with the first two lines of its docstring turned into `state =
    enter(record)` and `try:` and `leave(record, state)` in a `finally:` after its body; then
    the function as it is, to compare with the running one. The made function begins on line
    `first`, and its body's lines are kept as they are, on their own lines and columns (where
    Python 3.11+ points its carets in a traceback): what is added is indented less than they
    are, which is all that nesting needs."""
    if first < 2:
        raise ValueError("no line before the function for the maker's own")
    head, depth = lines[0].lstrip(), _depth(lines[0])
    end = 1
    while end < len(lines) and (not lines[end].strip() or _depth(lines[end]) > depth):
        end += 1
    if end >= MAX_LINES:
        raise ValueError("the function is longer than it is looked for")
    body = lines[1:end]
    doc = body[0].strip()
    quote = doc[:3]
    if quote not in ('"""', "'''") or quote in doc[3:] or _depth(body[0]) < 4:
        raise ValueError("no docstring of two lines or more to make room in")
    closing = next(i for i, line in enumerate(body[1:], 1) if quote in line)
    return "\n" * (first - 2) + "\n".join(
        ["def _hooked(enter, leave):", " " + head, "  state = enter(record)", "  try:",
         *[""] * (closing - 1), *body[closing + 1 :],
         "  finally:", "   leave(record, state)", f" return {name}", head, *body])  # fmt: skip


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip())


def _wrapper(original: Any, enter: Any, leave: Any) -> Callable[..., None]:
    # Named as this module: a traceback through it shows the frame as without vlhook (_frames).
    namespace: dict[str, Any] = {"enter": enter, "leave": leave, "__name__": __name__,
                                 "original": original}  # fmt: skip
    exec(compile(_WRAPPER, logging.__file__ or "logging", "exec"), namespace)  # noqa: S102
    return namespace["callHandlers"]  # type: ignore[no-any-return]


def message_of(record: logging.LogRecord) -> str:
    """record.getMessage(), or a readable form when the format and args do not match."""
    try:
        return record.getMessage()
    except Exception as error:
        return _unformattable(record, error)


def _unformattable(record: logging.LogRecord, error: Exception) -> str:
    """A record whose format and args do not match (the program's bug): shown in the entry,
    never raised, and not formatted again."""
    from vlhook._codec import safe_str

    return (
        f"{safe_str(record.msg)} (formatting failed: {safe_str(error)}; "
        f"args: {safe_str(record.args)})"
    )


def uninstall() -> None:
    global _original
    if _original is not None:
        logging.Logger.callHandlers = _original  # type: ignore[method-assign,assignment]
        _original = None
    handlers = sys.modules.get("logging.handlers")
    for (class_name, method), original in _later.items():
        setattr(getattr(handlers, class_name), method, original)
    _later.clear()
