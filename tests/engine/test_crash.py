"""Kill a headless `canvas-tui sync` with SIGKILL mid-run, resume it from its journal.

Both processes are real: `canvas-tui simulate` on a free loopback port and `canvas-tui sync`.
After the resume every record is accounted for, the simulator holds no duplicate enrollment, and
no record that was done before the kill was sent again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, World
from tests.engine.workload import write_csv

pytestmark = pytest.mark.slow

RECORDS = 300
BAD = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canvas_tui",
            "simulate",
            "--port",
            str(port),
            "--time-scale",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/__sim__/stats", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"simulator did not start: {proc.stdout.read()}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _stats(base: str) -> dict:
    return httpx.get(f"{base}/__sim__/stats", timeout=5).json()


def _journal(path: Path) -> tuple[dict[str, int], dict[int, int]]:
    """(counts by state, attempts rows per record)"""
    conn = sqlite3.connect(path)
    try:
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
        attempts = dict(conn.execute("SELECT record_id, COUNT(*) FROM attempts GROUP BY record_id"))
        done = {r for (r,) in conn.execute("SELECT record_id FROM records WHERE state = 'done'")}
    finally:
        conn.close()
    return counts, {r: attempts.get(r, 0) for r in done}


def _sync(tmp_path: Path, base: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CANVAS_BASE_URL": base,
        "CANVAS_API_TOKEN": ADMIN_TOKEN,
        "CANVAS_TUI_PROGRESS_INTERVAL": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "canvas_tui", "sync", "in.csv", "--journal", "run.journal"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_resume(tmp_path: Path, simulator: str) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS, bad=BAD)
    journal = tmp_path / "run.journal"

    first = _sync(tmp_path, simulator)
    deadline = time.monotonic() + 30
    while True:
        assert first.poll() is None, first.communicate()
        if journal.exists():
            try:
                counts, _ = _journal(journal)
            except sqlite3.OperationalError:  # the schema is still being created
                counts = {}
            if counts.get("done", 0) >= RECORDS // 4:
                break
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    before, done_before = _journal(journal)
    stats_before = _stats(simulator)
    assert 0 < before.get("done", 0) < RECORDS - BAD, before  # killed mid-run
    assert sum(before.values()) == RECORDS

    second = _sync(tmp_path, simulator)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 1, err  # the bad rows failed; everything else went through
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["failed"] == BAD
    assert summary["done"] == RECORDS - BAD

    after, done_after = _journal(journal)
    assert after == {"done": RECORDS - BAD, "failed": BAD}
    # No record that was done before the kill was sent again: its attempts did not grow.
    assert {r: done_after[r] for r in done_before} == done_before
    stats = _stats(simulator)
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == RECORDS - BAD
    # Only records in flight at the kill could be re-posted onto an existing row.
    resent = stats["reposts"] - stats_before["reposts"]
    assert resent <= before.get("in_flight", 0)
