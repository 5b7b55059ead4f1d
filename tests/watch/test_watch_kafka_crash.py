"""SIGKILL `canvas-tui watch` on a topic while a change is in flight to Canvas, before its outcome
is journaled: its offset is not committed, so the broker delivers it again to the next start;
the journal already holds it, and Canvas gets the enrollment once.

All real: the broker (Tansu, tests/watch/broker.py), `canvas-tui watch` in its own process, and
the simulator on a loopback socket, made to hold every request while the first process dies.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import pytest

from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.faults import FaultRates
from canvas_tui.simulator.testing import serve_in_thread
from tests.helpers import eventually, exited
from tests.watch.broker import change, committed, new_topic, produce, tansu_broker
from tests.watch.helpers import pairs, state_in

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

GROUP = "registrar"


def _watch(tmp_path: Path, base_url: str, out: TextIO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "canvas_tui", "watch", "--config", "canvas-tui.toml"],
        cwd=tmp_path,
        env={**os.environ, "CANVAS_BASE_URL": base_url, "CANVAS_API_TOKEN": ADMIN_TOKEN},
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _redelivered(path: Path) -> bool:
    return any(e["event"] == "log" and "delivered again" in e["message"] for e in _events(path))


def _states(journal: Path) -> list[tuple[int, str]]:
    """(offset, state) of every record."""
    try:
        db = sqlite3.connect(journal)
        try:
            return [(int(n), str(s)) for n, s in db.execute("SELECT line, state FROM records")]
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return []


def test_sigkill_before_the_outcome_redelivers_without_a_duplicate(tmp_path: Path) -> None:
    app = build_app(SimConfig(time_scale=50), World.generate(7))
    world = app.world
    chosen = pairs(world, 2)
    journal = tmp_path / "watch.journal"
    with tansu_broker() as broker, serve_in_thread(app) as base_url:
        topic = new_topic(broker, partitions=1)
        (tmp_path / "canvas-tui.toml").write_text(
            f"[source]\nkind = 'kafka'\nbrokers = ['{broker}']\ntopic = '{topic}'\n"
            f"group = '{GROUP}'\n[watch]\ninterval = 0.05\ndrift_at = ''\n"
            f"journal = '{journal}'\n"
        )
        first = _watch(tmp_path, base_url, (tmp_path / "first.log").open("w"))
        try:
            produce(broker, topic, [(0, change(chosen[0]))])
            eventually(
                lambda: _states(journal) == [(0, "done")],
                what="the first change done",
                timeout=60,
                abort_if=exited(first),
            )
            eventually(
                lambda: committed(broker, topic, GROUP, 1) == {0: 1},
                what="its offset committed",
                abort_if=exited(first),
            )
            # Canvas now holds every request (two world minutes): the next change stays in flight
            app.set_faults(FaultRates(slow=1.0, slow_seconds=50 * 120))
            produce(broker, topic, [(0, change(chosen[1]))])
            eventually(
                lambda: _states(journal) == [(0, "done"), (1, "in_flight")],
                what="the second change in flight",
                abort_if=exited(first),
            )
            assert committed(broker, topic, GROUP, 1) == {0: 1}  # no outcome, no commit
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        assert _states(journal) == [(0, "done"), (1, "in_flight")]

        app.set_faults(FaultRates())
        log = tmp_path / "second.log"
        second = _watch(tmp_path, base_url, log.open("w"))
        try:
            eventually(
                lambda: _states(journal) == [(0, "done"), (1, "done")],
                what="the second change done after the restart",
                timeout=90,
                abort_if=exited(second),
            )
            eventually(
                lambda: committed(broker, topic, GROUP, 1) == {0: 2},
                what="its offset committed after the restart",
                abort_if=exited(second),
            )
            # the broker delivers offset 1 again; the journal has it: it is not journaled twice
            eventually(
                lambda: _redelivered(log),
                what="the message delivered again, and skipped",
                abort_if=exited(second),
                detail=lambda: log.read_text()[-2000:],
            )
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 0, log.read_text()[-2000:]
    assert _events(log)[-1]["event"] == "stopped"
    assert _states(journal) == [(0, "done"), (1, "done")]
    assert state_in(world, chosen[1]) == "active"
    stats = app.stats()
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == 2
