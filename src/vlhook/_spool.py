"""The spool: batches that could not be delivered in time wait on disk and are replayed.

Files are written to a temporary name and renamed (no half files after a crash), owner-only,
in an owner-only directory. A process claims a file by renaming it to a name holding its pid,
so two processes sharing the spool never send the same file; a claim whose process died is
taken back. The total size is capped: the oldest files are dropped first, and counted.
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from dataclasses import dataclass

from vlhook import _diag
from vlhook._stats import Stats

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Optional

SUFFIX = ".jsonl"
CLAIM = ".sending-"
_counter = itertools.count()


@dataclass(frozen=True)
class SpoolFile:
    path: str
    name: str
    size: int
    mtime: float


class Spool:
    def __init__(self, directory: str, max_bytes: int, stats: Stats) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = stats
        self._ready = False

    def _ensure_dir(self) -> bool:
        if self._ready:
            return True
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            info = os.stat(self.directory)
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                _diag.warn(f"spool directory {self.directory} belongs to another user; not used")
                return False
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(self.directory, 0o700)
        except OSError as exc:
            _diag.warn(f"cannot use spool directory {self.directory}: {exc}", key="spool-dir")
            return False
        self._ready = True
        return True

    def put(self, body: bytes, lines: int) -> bool:
        """Keep a batch (uncompressed JSON lines) on disk. False when it could not be kept."""
        if self.max_bytes <= 0 or not self._ensure_dir():
            return False
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}{SUFFIX}"
        final = os.path.join(self.directory, name)
        temporary = os.path.join(self.directory, f".tmp-{name}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            os.rename(temporary, final)
        except OSError as exc:
            _diag.warn(f"cannot write to spool {self.directory}: {exc}", key="spool-write")
            return False
        self.stats.spooled += lines
        self._enforce_cap()
        return True

    def files(self) -> list[SpoolFile]:
        """Waiting files, oldest first (names start with the nanosecond time)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        out = []
        for name in sorted(names):
            if name.startswith(".tmp-") or SUFFIX not in name:
                continue
            path = os.path.join(self.directory, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            out.append(SpoolFile(path, name, info.st_size, info.st_mtime))
        return out

    def claim(self) -> Optional[tuple[str, bytes]]:
        """Take the oldest unclaimed file (or one whose claimer died): (claimed path, body)."""
        for file in self.files():
            base, sep, owner = file.name.partition(CLAIM)
            if sep and _alive(owner):
                continue
            claimed = os.path.join(self.directory, f"{base}{CLAIM}{os.getpid()}")
            try:
                os.rename(file.path, claimed)
                with open(claimed, "rb") as handle:
                    return claimed, handle.read()
            except OSError:
                continue  # another process took it first
        return None

    def release(self, claimed: str, delivered: bool) -> None:
        try:
            if delivered:
                os.unlink(claimed)
            else:
                os.rename(claimed, claimed.partition(CLAIM)[0])
        except OSError:
            pass

    def purge(self) -> int:
        removed = 0
        for file in self.files():
            try:
                os.unlink(file.path)
                removed += 1
            except OSError:
                pass
        return removed

    def _enforce_cap(self) -> None:
        files = self.files()
        total = sum(f.size for f in files)
        for file in files:
            if total <= self.max_bytes:
                break
            try:
                with open(file.path, "rb") as handle:
                    lines = handle.read().count(b"\n")
                os.unlink(file.path)
            except OSError:
                continue
            total -= file.size
            self.stats.drop("spool_full", lines)


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
