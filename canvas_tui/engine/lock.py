"""One run per journal: an exclusive lock held for as long as a journal is open for writing.

A second run on the same journal would reset the first one's in-flight records to pending and
send them again (overlapping cron runs do exactly this), so it is refused. The lock is
`JOURNAL.lock` beside the journal, held with flock(2): the kernel drops it when its process
dies, however it dies, so a file left behind by a dead process is recognised as stale and
taken over. The file names the holder (PID, start time, host) for the refusal message.
Read-only opens (the console's view of a running engine's journal) take no lock.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from canvas_tui.private_files import FILE_MODE

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory locks to take
    fcntl = None  # type: ignore[assignment]


class JournalBusy(Exception):
    """Another live process holds the journal."""


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


@dataclass
class JournalLock:
    path: Path
    fd: int
    stale: str | None = None  # what a dead holder left in the file, when one did

    @classmethod
    def acquire(cls, journal: Path) -> JournalLock:
        """Take the lock or raise JournalBusy naming the holder."""
        path = lock_path(journal)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise JournalBusy(
                    f"{journal} is in use by {holder or 'another process'}; wait for that run "
                    "to end or stop it (two runs on one journal would send records twice)"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file between our open and our lock:
            # a lock on a file no longer at `path` locks nothing anyone else will look at.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read(fd) or None
        mine = f"PID {os.getpid()} since {_now()} on {socket.gethostname()}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine.encode() + b"\n", 0)
        return cls(path, fd, stale)

    def release(self) -> None:
        if self.fd < 0:
            return
        # Removed while still held, so nobody can lock the old file and believe it current.
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = -1


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
