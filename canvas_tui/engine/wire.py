"""Sending engine/protocol.py's messages: from a thread of the sender's own, and only what the
other end can read back. Shared by the engine process (engine/worker.py) and the attach socket
(engine/attach.py)."""

from __future__ import annotations

import pickle
import threading
from collections import deque
from multiprocessing.connection import Connection

from canvas_tui.engine.protocol import EngineError, Hello, Ready, Snapshot, ToConsole


class Outbox:
    """Sends from a thread of its own, so a console that is slow to read never stalls the
    engine's event loop. Snapshots are coalesced: only the newest waits to be sent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._messages: deque[ToConsole | Hello | Ready] = deque()
        self._snapshot: Snapshot | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send_all, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: ToConsole | Hello | Ready) -> None:
        with self._wake:
            self._messages.append(message)
            self._wake.notify()

    def snapshot(self, snapshot: Snapshot) -> None:
        with self._wake:
            self._snapshot = snapshot
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _send_all(self) -> None:
        while True:
            with self._wake:
                while not self._messages and self._snapshot is None and not self._closed:
                    self._wake.wait()
                if self._messages:
                    message: ToConsole | Hello | Ready = self._messages.popleft()
                elif self._snapshot is not None:
                    message, self._snapshot = self._snapshot, None
                else:
                    return
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return  # the console is gone; the reader sees EOF and winds the run down


def sendable(exc: BaseException) -> BaseException:
    """`exc` if the console can unpickle it as itself, else an EngineError that says it."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return EngineError(f"{type(exc).__name__}: {exc}")
    return exc
