"""`canvas-tui watch` as an operator runs it: JSON lines, the health probe, SIGTERM, usage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, World, build_app
from canvas_tui.simulator.testing import free_port, serve_in_thread
from tests.helpers import eventually, eventually_async, exited, fast_config, write_rows
from tests.watch.helpers import pairs

pytestmark = pytest.mark.slow

HEADER = ["course_id", "user_id", "role", "section_id", "status"]


@pytest.fixture
def canvas() -> Iterator[str]:
    with serve_in_thread(build_app(fast_config(), World.generate(7))) as base_url:
        yield base_url


def _watch(cwd: Path, base_url: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "canvas_tui", "watch", *argv],
        cwd=cwd,
        env={
            **os.environ,
            "CANVAS_BASE_URL": base_url,
            "CANVAS_API_TOKEN": ADMIN_TOKEN,
            "XDG_STATE_HOME": str(cwd / "state"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def test_health_probe_json_lines_and_sigterm(tmp_path: Path, canvas: str) -> None:
    chosen = pairs(World.generate(7), 3)
    write_rows(tmp_path / "in.csv", [[c, u, "student", s, "active"] for u, c, s in chosen], HEADER)
    port = free_port()
    proc = _watch(tmp_path, canvas, "in.csv", "--interval", "0.1", "--health", str(port))
    try:
        ready = eventually(
            lambda: (
                (r := _get(f"http://127.0.0.1:{port}/readyz")) is not None
                and r.status_code == 200
                and r.json()["counts"].get("done") == 3
                and r
            ),
            what="ready, with the three rows done",
            abort_if=exited(proc),
        )
        assert ready.json()["live"] is True
        live = _get(f"http://127.0.0.1:{port}/healthz")
        assert live is not None and live.status_code == 200
        missing = _get(f"http://127.0.0.1:{port}/nothing")
        assert missing is not None and missing.status_code == 404
        # one service per journal: a second one says who holds it
        second = _watch(tmp_path, canvas, "in.csv")
        out2, _ = second.communicate(timeout=30)
        assert second.returncode == 2
        assert "PID" in json.loads(out2.splitlines()[-1])["message"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] in ("attach", "health", "watching") and names[-1] == "stopped"
    assert "stopping" in names
    changes = next(e for e in events if e["event"] == "changes")
    assert (changes["changes"], changes["records"]) == (3, 3)
    done = [e for e in events if e["event"] == "record_done"]
    assert sorted(e["user"] for e in done) == sorted(u for u, _c, _s in chosen)
    assert events[-1]["counts"]["done"] == 3
    # the default journal has a fixed name, so a restart resumes it
    journal = tmp_path / "state" / "canvas-tui" / "runs" / "watch.journal"
    assert journal.is_file()
    # consoles could attach while it ran (engine/attach.py); the socket goes with the service
    attach = next(e for e in events if e["event"] == "attach")
    assert attach["socket"] == f"{journal}.sock"
    assert not Path(attach["socket"]).exists()


def test_usage_errors_exit_2_before_anything_is_sent(tmp_path: Path, canvas: str) -> None:
    proc = _watch(tmp_path, canvas, "missing-dir/none.csv", "--allow-drops", "-1")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert json.loads(out.splitlines()[-1])["event"] == "error"
    (tmp_path / "bad.toml").write_text("[watch]\ndrift_at = 'noon'\n")
    proc = _watch(tmp_path, canvas, "--config", "bad.toml")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "drift_at" in json.loads(out.splitlines()[-1])["message"]


def test_a_source_missing_at_start_exits_2_and_makes_no_journal(
    tmp_path: Path, canvas: str
) -> None:
    proc = _watch(tmp_path, canvas, "nothere.csv", "--interval", "0.1")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in out.splitlines()]
    assert line["event"] == "error" and "nothere.csv: no such file" in line["message"]
    # no journal bound to the wrong path: the corrected command starts clean
    assert not (tmp_path / "state").exists()


def test_a_database_down_at_start_is_waited_out(tmp_path: Path, canvas: str) -> None:
    """Wrong config exits 2; a server that is down is a service's ordinary weather: it starts,
    says so, is not ready, and stops cleanly."""
    (tmp_path / "c.toml").write_text(
        "[source]\n"
        f'url = "postgresql+psycopg://reader@127.0.0.1:{free_port()}/sis"\n'
        'query = "SELECT course_id, user_id, role, section_id, status FROM enrollments"\n'
    )
    port = free_port()
    proc = _watch(tmp_path, canvas, "-c", "c.toml", "--interval", "0.1", "--health", str(port))
    try:
        ready = eventually(
            lambda: (
                (r := _get(f"http://127.0.0.1:{port}/readyz")) is not None
                and r.json()["source_error"]
                and r
            ),
            what="the outage in /readyz",
            abort_if=exited(proc),
        )
        assert ready.status_code == 503
        assert "cannot connect to" in ready.json()["source_error"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    names = [json.loads(line)["event"] for line in out.splitlines()]
    assert "source_unavailable" in names and names[-1] == "stopped"


async def test_a_console_attached_to_the_service_sees_each_change(
    tmp_path: Path, canvas: str
) -> None:
    """`canvas-tui console --attach JOURNAL` follows a watch as it follows a sync: the counts
    move as changes arrive, and the socket goes when the service stops."""
    from canvas_tui.engine.attach import attach_engine
    from canvas_tui.engine.state import Phase
    from canvas_tui.records import State

    chosen = pairs(World.generate(7), 5)
    rows = [[c, u, "student", s, "active"] for u, c, s in chosen]
    write_rows(tmp_path / "in.csv", rows[:3], HEADER)
    journal = tmp_path / "w.journal"
    socket = tmp_path / "w.journal.sock"
    proc = _watch(tmp_path, canvas, "in.csv", "--interval", "0.1", "--journal", "w.journal")
    try:
        await eventually_async(socket.exists, what="the socket", abort_if=exited(proc))
        attached = attach_engine(journal)
        try:
            assert attached.service  # a watch: the console says WATCHING, not FINISHED

            def done() -> int:
                return attached.runner.snapshot().counts.get(State.DONE, 0)

            await eventually_async(lambda: done() == 3, what="three done, seen attached")
            write_rows(tmp_path / "in.csv", rows, HEADER)
            await eventually_async(lambda: done() == 5, what="two more, seen attached")
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
            # the service went: no longer WATCHING, and the console says why, without an abort
            await eventually_async(lambda: not attached.service, what="the service gone")
            state = attached.runner.snapshot()
            assert state.phase is Phase.FINISHED and state.abort_reason is None
            assert "stopped serving it" in (state.paused_reason or "")
        finally:
            await attached.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not socket.exists()


async def test_the_attached_console_says_watching_then_that_the_service_stopped(
    tmp_path: Path, canvas: str
) -> None:
    """Between changes a watch's run is FINISHED: attached, the console says WATCHING; once
    the service stops (SIGTERM) it says so in a toast, and quitting is still exit 0."""
    from canvas_tui.engine.attach import attach_engine
    from canvas_tui.tui.app import ConsoleApp
    from canvas_tui.tui.session import ConsoleSession
    from tests.tui.conftest import SIZE

    chosen = pairs(World.generate(7), 2)
    write_rows(tmp_path / "in.csv", [[c, u, "student", s, "active"] for u, c, s in chosen], HEADER)
    socket = tmp_path / "w.journal.sock"
    proc = _watch(tmp_path, canvas, "in.csv", "--interval", "0.1", "--journal", "w.journal")
    try:
        await eventually_async(socket.exists, what="the socket", abort_if=exited(proc))
        session = attach_engine(tmp_path / "w.journal")

        async def opener() -> ConsoleSession:
            return session

        app = ConsoleApp(opener, read_only=True, journal_path=session.journal_path, attached=True)
        async with app.run_test(size=SIZE) as pilot:
            await eventually_async(
                lambda: app.state is not None and app.idle_label(app.state) == "WATCHING",
                what="WATCHING once the first read is sent",
                pause=pilot.pause,
            )
            proc.send_signal(signal.SIGTERM)
            await eventually_async(
                lambda: any(n.title == "The service stopped" for n in app._notifications),
                what="the toast that the service stopped",
                pause=pilot.pause,
            )
            assert app.state is not None and app.idle_label(app.state) is None
            await pilot.press("q")
        assert app.return_code == 0
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
