"""A simulator whose writes wait at a gate, and a headless `sync` against it: a run that is
certainly going (its first requests held in flight) when a console attaches, for as long as the
test keeps the gate shut."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canvas_tui.engine.attach import socket_path
from canvas_tui.simulator import LatencyModel, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv
from tests.helpers import eventually, exited, start_sync

WRITES = frozenset({"POST", "PUT", "DELETE"})


class WriteGate:
    """ASGI middleware: reads pass; each write waits until `opened` is set, counted in `held`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.opened = threading.Event()
        self.held = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") in WRITES:
            self.held += 1
            # the test's thread opens it (a threading.Event), every test and teardown do
            while not self.opened.is_set():  # noqa: ASYNC110 - no asyncio.Event across threads
                await asyncio.sleep(0.01)
        await self.app(scope, receive, send)


@dataclass
class GatedSync:
    """A `canvas-tui sync` process (`proc`) over `records` rows, its journal, and the gate."""

    proc: subprocess.Popen[str]
    journal: Path
    gate: WriteGate
    records: int

    def wait_until_held(self) -> None:
        """The sync serves its socket and has writes waiting at the gate: it is RUNNING."""
        eventually(
            lambda: socket_path(self.journal).exists() and self.gate.held > 0,
            what="the sync's attach socket and its first held write",
            abort_if=exited(self.proc),
        )

    def finish(self) -> tuple[int, str, str]:
        self.gate.opened.set()
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


@contextmanager
def gated_sync(tmp_path: Path, records: int = 40, *argv: str) -> Iterator[GatedSync]:
    world = World.generate(7)
    gate = WriteGate(
        build_app(SimConfig(seed=7, time_scale=10.0, latency=LatencyModel.uniform(0.05)), world)
    )
    write_csv(tmp_path / "in.csv", world, records)
    journal = tmp_path / "run.journal"
    with serve_in_thread(gate) as url:
        proc = start_sync(
            tmp_path, url, "in.csv", "--journal", str(journal), "--log-format", "json", *argv
        )
        try:
            yield GatedSync(proc, journal, gate, records)
        finally:
            gate.opened.set()
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
