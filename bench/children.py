"""The programs the bench runs as children (`python -c SOURCE args...`), kept apart from the
code that runs them so that each reads as the program it is."""

from __future__ import annotations

# Figure 3's child: times only the call loop, then leaves with os._exit so the exit flush of
# what it captured (a figure-4 matter) does not slow the run down. `cpus`: "all", or "one" to
# run the whole process on one CPU (as on a machine, or in a container, that has one).
CALLS_CHILD = """
import json, os, sys, time
n, out, kind, cpus = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if cpus == "one":  # before the first capture starts vlhook's threads: they inherit it
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
line = "x" * 100
if kind == "print":
    def call():
        print(line)
else:
    import logging
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("b")
    def call():
        log.info("msg %s", 1)
# Warm up, then let the sender thread finish importing its pipeline: steady state is measured.
for _ in range(1000):
    call()
time.sleep(0.3)
# Wall time is what the caller waits, sender thread's share of the GIL included; thread CPU
# is the caller's own work (the tee, the capture, the buffer append). The loops are written
# out rather than calling call(): an extra Python call would dilute the ratio.
if kind == "print":
    start, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        print(line)
    end, cpu_end = time.perf_counter_ns(), time.thread_time_ns()
else:
    start, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        log.info("msg %s", 1)
    end, cpu_end = time.perf_counter_ns(), time.thread_time_ns()
sys.stdout.flush()
active = getattr(sys, "_vlhook_active", None)
dropped = sum(active.stats.dropped.values()) if active is not None else 0
with open(out, "w") as fh:
    json.dump({"ns": end - start, "thread_ns": cpu_end - cpu, "dropped": dropped}, fh)
os._exit(0)
"""

# Figures 3 and 8: print()'s own-thread CPU in the caller, in rounds; writes the lowest round's
# ns per print. `bare`: no vlhook; `plain`: vlhook active, OpenTelemetry not imported; `otel`:
# imported (the SDK's provider, as a traced program has it), timed outside and inside a span in
# alternating rounds, so that both see the same process state. `alone`: the sender sleeps while
# a round is timed and is flushed between rounds (the caller's own work: one capture);
# `shared`: the sender runs as usual, taking its share of the GIL. Writes {"outside": ns} and,
# for `otel`, {"inside": ns}.
ROUNDS_CHILD = """
import json, os, sys, time
n, rounds, out, kind, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], \\
    sys.argv[5]
if kind != "bare":
    import vlhook
line = "x" * 100
if kind == "otel":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench")
def block(count):
    cpu = time.thread_time_ns()
    for _ in range(count):
        print(line)
    spent = (time.thread_time_ns() - cpu) / count
    if mode == "alone" and kind != "bare":
        vlhook.flush(10)
    return spent
block(1000)
time.sleep(0.3)
lowest = {"outside": float("inf"), "inside": float("inf")}
for _ in range(rounds):
    lowest["outside"] = min(lowest["outside"], block(n // rounds))
    if kind == "otel":
        with tracer.start_as_current_span("bench"):
            lowest["inside"] = min(lowest["inside"], block(n // rounds))
with open(out, "w") as fh:
    json.dump(lowest if kind == "otel" else {"outside": lowest["outside"]}, fh)
os._exit(0)
"""

# Figure 3: print() paced at `rate` lines per second (sleeping between lines), as a program
# that logs steadily does, the sender running as it normally does. Times each call; half a
# second at the same pace first (caches, the sender's first wake-up). Exits normally.
PACED_CHILD = """
import json, sys, time
n, rate, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
line = "x" * 100
clock, sleep, period = time.perf_counter_ns, time.sleep, 1_000_000_000 // rate
warm = rate // 2
spent = []
start = clock()
for i in range(warm + n):
    wait = start + i * period - clock()
    if wait > 0:
        sleep(wait / 1e9)
    before = clock()
    print(line)
    spent.append(clock() - before)
spent = sorted(spent[warm:])
with open(out, "w") as fh:
    json.dump({"median": spent[len(spent) // 2], "p99": spent[len(spent) * 99 // 100],
               "mean": sum(spent) / len(spent)}, fh)
"""

# Figure 3: print() at `rate` lines per second as PACED_CHILD, vlhook active, every other line
# written to the tee's own original stream instead of through the tee: both kinds of call see
# the same process, the same caches after each sleep and the same sender, so that their ratio
# is free of what varies from one process to the next (±30 % here). Writes the median of each.
PACED_SAME_CHILD = """
import json, sys, time
from vlhook._capture_streams import original
n, rate, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
line = "x" * 100
tee, raw = sys.stdout, original(sys.stdout)
clock, sleep, period = time.perf_counter_ns, time.sleep, 1_000_000_000 // rate
warm = rate // 2
spent = {"tee": [], "raw": []}
start = clock()
for i in range(warm + 2 * n):
    wait = start + i * period - clock()
    if wait > 0:
        sleep(wait / 1e9)
    if i % 2:
        before = clock()
        print(line, file=raw)
        spent["raw"].append(clock() - before)
    else:
        before = clock()
        print(line, file=tee)
        spent["tee"].append(clock() - before)
medians = {}
for kind, values in spent.items():
    values = sorted(values[warm // 2:])
    medians[kind] = values[len(values) // 2]
with open(out, "w") as fh:
    json.dump(medians, fh)
"""

# Figures 4 and 7: lines of 100 characters (plus the newline), each holding the run's tag (a
# unique hex word the server is asked for) and its number. Notes what vlhook shed (buffer
# full) by the end of the script — vlhook's own report of it is an entry that is lost with
# the rest when the exit deadline passes — and how often and how long the program waited for
# room (`ON_FULL=block`).
LINES_CHILD = """
import json, sys
count, out, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
pad = "x" * (100 - len(tag) - 9)
for i in range(count):
    print(f"{tag} {i:07d} {pad}")
active = getattr(sys, "_vlhook_active", None)
stats = active.stats if active is not None else None
with open(out, "w") as fh:
    json.dump({"dropped": dict(stats.dropped) if stats else {},
               "room_waits": stats.room_waits if stats else 0,
               "room_wait_ms": stats.room_wait_ms if stats else 0}, fh)
"""

# Figure 4's third variant, a prefix to LINES_CHILD: the least a program would write to ship
# its own lines without vlhook. sys.stdout becomes a tee that writes through and queues each
# line with its time; a thread takes up to 1,000 lines at a time (vlhook's default batch),
# encodes them with orjson, gzips them (level 1) and POSTs them to /insert/jsonline on one
# keep-alive connection; at exit it sends what is left and waits for the answer. While 65,536
# lines wait, the program waits too (as vlhook does with VICTORIALOGS_ON_FULL=block). Each
# encoded line is appended to one bytearray: kept alive as a list of orjson's outputs and then
# joined, they cost ~2 us more per line here (each output's buffer is allocated large, then
# shrunk, and the allocator pays for it once thousands stay alive).
BATCHER = """
import atexit, collections, http.client, os, sys, threading, time, urllib.parse, zlib
import orjson
_BATCH, _LIMIT, _INTERVAL_S = 1000, 65536, 0.5
_url = urllib.parse.urlsplit(os.environ["BENCH_BATCHER_URL"])
_pending = collections.deque()
_wake, _stop = threading.Event(), threading.Event()
class _Tee:
    def __init__(self, stream):
        self._stream, self._partial = stream, ""
    def write(self, text):
        written = self._stream.write(text)
        if "\\n" not in text:
            self._partial += text
            return written
        lines = (self._partial + text).split("\\n")
        self._partial = lines.pop()
        now = time.time_ns()
        _pending.extend([(now, line) for line in lines])
        waiting = len(_pending)
        if waiting >= _BATCH:
            if not _wake.is_set():
                _wake.set()
            while waiting >= _LIMIT:
                time.sleep(0.001)
                waiting = len(_pending)
        return written
    def __getattr__(self, name):
        return getattr(self._stream, name)
def _post(conn, batch):
    body = bytearray()
    for t, m in batch:
        body += orjson.dumps({"_time": t, "_msg": m, "stream": "stdout"})
        body += b"\\n"
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    conn.request("POST", "/insert/jsonline", packer.compress(body) + packer.flush(),
                 {"Content-Type": "application/stream+json", "Content-Encoding": "gzip"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
def _ship():
    conn = http.client.HTTPConnection(_url.hostname, _url.port, timeout=30)
    while True:
        if len(_pending) < _BATCH and not _stop.is_set():
            _wake.wait(_INTERVAL_S)
            _wake.clear()
        if not _pending:
            if _stop.is_set():
                return
            continue
        _post(conn, [_pending.popleft() for _ in range(min(_BATCH, len(_pending)))])
def _finish():
    if sys.stdout._partial:
        _pending.append((time.time_ns(), sys.stdout._partial))
    _stop.set()
    _wake.set()
    _thread.join()
sys.stdout = _Tee(sys.stdout)
_thread = threading.Thread(target=_ship, daemon=True)
_thread.start()
atexit.register(_finish)
"""

# Figure 7's alternative to the helper process: a thread in the program reads the pipe that
# replaced fd 1 and writes it to the real fd (forwarding only: shipping would add its CPU, on
# the same GIL). As a prefix to figure 3's child, or to a child that writes and is killed.
READER_THREAD = """
import os, threading
_r, _w = os.pipe()
_original = os.dup(1)
os.dup2(_w, 1)
os.close(_w)
def _forward():
    while True:
        data = os.read(_r, 1 << 20)
        if not data:
            return
        os.write(_original, data)
threading.Thread(target=_forward, daemon=True).start()
"""

# Figure 7: writes lines to fd 1 as fast as it can, then is killed.
KILLED_CHILD = """
import os, signal, sys
for i in range(int(sys.argv[1])):
    os.write(1, b"line %07d\\n" % i)
os.kill(os.getpid(), signal.SIGKILL)
"""


# Figure 6's child: the sender's cost of making entries (level, fields, redaction), in-process,
# for a group of 256 captures of one kind, with the vlhook found on its PYTHONPATH (this
# checkout's, or an older one given with --baseline-src). Prints ns per entry for each kind.
ENTRIES_CHILD = """
import json, logging, statistics, sys, time
from vlhook._config import load
from vlhook._delivery.encode import Encoder, constant_fields
from vlhook._entry import EntryBuilder
from vlhook._lines import LineAssembler
from vlhook._stats import Stats
from vlhook._captures import record as make_record, text as make_text
passes, env = int(sys.argv[1]), json.loads(sys.argv[2])
config = load({"VICTORIALOGS_URL": "http://127.0.0.1:9", **env})
builder, stats = EntryBuilder(config, Stats()), Stats()
encoder = Encoder(constant_fields(config), stats)
now = time.time_ns()
def writes(texts, context=None):
    return [make_text(0, text + "\\n", now + i, 7, context) for i, text in enumerate(texts)]
def nested(i):
    return json.dumps({"msg": f"request {i}", "level": "info",
                       "user": {"id": i, "name": "bob", "roles": ["admin", "dev"]},
                       "http": {"method": "GET", "path": "/api/items", "status": 200,
                                "headers": {"accept": "*/*", "user-agent": "curl/8.5"}}})
def flat(i):
    return json.dumps({"message": f"request {i}", "level": "info", "logger": "app.http",
                       "request_id": f"r-{i:08d}", "method": "GET", "status": 200, "ms": 1.5})
def stamped(i):
    # structlog's JSONRenderer with TimeStamper(fmt="iso"): the line's own time.
    return json.dumps({"event": f"request {i}", "request_id": f"r-{i:08d}", "status": 200,
                       "level": "info", "timestamp": f"2026-12-05T05:13:{i % 60:02d}.{i:06d}Z"})
log = logging.getLogger("bench")
def record(i, extra, context=None):
    # A function name, as every record logger.info() makes has.
    rec = log.makeRecord("bench", logging.INFO, "app.py", 1, "order %s", (i,), None,
                         "handle", extra)
    return make_record(rec, now, 0, context, logging.INFO, rec.getMessage(), [])
def url_record(i):
    # As httpx logs every request it makes.
    url = f"https://api.example.com/v1/orders/{i:07d}?page=2"
    rec = log.makeRecord("httpx", logging.INFO, "_client.py", 1025,
                         'HTTP Request: %s %s "%s %d %s"', ("GET", url, "HTTP/1.1", 200, "OK"),
                         None, "_send_single_request", None)
    return make_record(rec, now, 0, None, logging.INFO, rec.getMessage(), [])
def event(i):
    # structlog through logging (ProcessorFormatter.wrap_for_formatter): the event dict as the
    # record's message, and the JSON its formatter printed (JSONRenderer, TimeStamper).
    msg = {"order_id": i, "user": "amy", "event": "order placed", "level": "info",
           "logger": "bench"}
    rec = log.makeRecord("bench", logging.INFO, "app.py", 1, msg, (), None, "handle", None)
    printed = [json.dumps({**msg, "timestamp": "2026-12-05T05:13:12.123456Z"}) + "\\n"]
    return make_record(rec, now, 0, None, logging.INFO, rec.getMessage(), printed)
def loguru_records():
    # loguru's records as its integration captures them at the console sink.
    from loguru import logger
    from vlhook._captures import event as make_event
    from vlhook._integrations.loguru import entry_fields
    made = []
    logger.remove()
    logger.add(lambda message: made.append(message.record), level="INFO")
    for i in range(256):
        logger.bind(request_id=f"r-{i:08d}").info("order placed {} user={}", i, "amy")
    return [make_event(entry_fields, (record, ""), now, 0, None, 20) for record in made]
def order(i):
    return {"user_id": 42, "duration_ms": 12.5,
            "order": {"id": f"o-{i}", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}}
TRACE = ({"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
          "trace_flags": "01"},)
# A span's trace ids, then fields the program bound (vlhook.bind, structlog): two sources,
# merged on the sender (a later one wins) before they go under the entry.
BOUND = (TRACE[0], {"user_id": 42, "tenant": "north", "request_id": "r-00000001"})
groups = {
    "plain": writes([f"{i:07d} " + "x" * 92 for i in range(256)]),
    # A request line with a long query string: words, numbers, no level, nothing to escape.
    "long": writes([(f"{i:07d} GET /api/search?" + "&".join(
        f"field{k}=value{k * i}" for k in range(80)))[:1000] for i in range(256)]),
    "traced": writes([f"{i:07d} " + "x" * 92 for i in range(256)], TRACE),
    # httpx's line for every request it makes (logged at INFO, here printed): a URL, which
    # the redaction's URL patterns read; nothing in it is a secret.
    "url": writes([f'HTTP Request: GET https://api.example.com/v1/orders/{i:07d}?page=2&limit=50'
                   ' "HTTP/1.1 200 OK"' for i in range(256)]),
    # A tuple of its own per capture, as a capture reads its sources (see vlhook._context).
    "bound": [make_text(0, f"{i:07d} " + "x" * 92 + "\\n", now + i, 7, (*BOUND,))
              for i in range(256)],
    "flat": writes([flat(i) for i in range(256)]),
    "stamped": writes([stamped(i) for i in range(256)]),
    "stamped_traced": writes([stamped(i) for i in range(256)], TRACE),
    "json": writes([nested(i) for i in range(256)]),
    "record": [record(i, None) for i in range(256)],
    "record_url": [url_record(i) for i in range(256)],
    "bound_records": [record(i, None, (*BOUND,)) for i in range(256)],
    "record_extra": [record(i, {"user_id": 42 + i, "path": "/api/items", "ms": 1.5})
                     for i in range(256)],
    "records": [record(i, order(i)) for i in range(256)],
    "record_event": [event(i) for i in range(256)],
    "record_loguru": loguru_records(),
}
def made(kind, group):
    # What the sender makes of a group, as its _feed_many and take_records do (an older
    # checkout, --baseline-src, without the run and record paths: its per-write path).
    if kind.startswith(("record", "bound_record")):  # record_extra too
        if hasattr(builder, "written_records"):
            return builder.written_records(group)
        return [entry for item in group for entry in builder.from_item(item)]
    assembler = LineAssembler()
    run = assembler.whole_lines(group) if hasattr(assembler, "whole_lines") else None
    entries = builder.written_run(run) if run is not None else None
    if entries is None:
        lines = []
        assembler.feed_many(group, lines)
        entries = builder.written_lines(lines)
    return entries
def one_pass(kind, group):
    body = bytearray()
    start = time.perf_counter_ns()
    encoder.append(made(kind, group), body)
    return (time.perf_counter_ns() - start) / len(group)
out = {}
for kind, group in groups.items():
    for _ in range(20):
        one_pass(kind, group)
    out[kind] = statistics.median(one_pass(kind, group) for _ in range(passes))
print(json.dumps(out))
"""
