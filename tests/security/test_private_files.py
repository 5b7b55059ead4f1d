"""Students' enrollment data stays the operator's: the journal (and its -wal, -shm and lock
files), the report, the failures CSV and the engine log are created 0600 in directories created
0700, whatever the umask. A password in a base URL is never echoed back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.engine.journal import Journal, JournalError
from canvas_tui.engine.lock import lock_path
from canvas_tui.engine.protocol import EngineSpec
from canvas_tui.engine.remote import engine_log_path, start_engine
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.conftest import sim_config
from tests.engine.workload import write_csv
from tests.security.conftest import run_sync


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most systems ship (0644 files), which these files must not follow."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def base_url() -> Iterator[str]:
    with serve_in_thread(build_app(SimConfig(time_scale=50), World.generate(7))) as url:
        yield url


def test_sync_outputs_are_private(
    tmp_path: Path,
    base_url: str,
    open_umask: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), 20, bad=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANVAS_BASE_URL", base_url)
    monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)
    journal = Path("state/runs/j.journal")
    report = Path("out/deep/r.json")
    assert run_sync(["in.csv", "--journal", str(journal), "--report", str(report)]) == 1
    for path in (journal, report, report.with_name("r.failures.csv")):
        assert mode(path) == 0o600, path
    for directory in (Path("state"), Path("state/runs"), Path("out"), Path("out/deep")):
        assert mode(directory) == 0o700, directory

    # While a run holds it: the WAL, its index and the lock are private too.
    opened = Journal(journal)
    try:
        opened.set_meta(note="x")
        opened.flush_sync()
        for path in (Path(f"{journal}-wal"), Path(f"{journal}-shm"), lock_path(journal)):
            assert mode(path) == 0o600, path
    finally:
        opened.close()


def test_an_existing_report_is_narrowed(tmp_path: Path, open_umask: None) -> None:
    from canvas_tui.engine.report import write_report

    report = tmp_path / "r.json"
    report.write_text("{}")
    report.chmod(0o644)
    journal = Journal(tmp_path / "j.journal")
    try:
        write_report(journal, report)
    finally:
        journal.close()
    assert mode(report) == 0o600


async def test_engine_log_is_private_and_the_engine_holds_the_lock(
    tmp_path: Path, base_url: str, open_umask: None
) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), 10)
    journal = tmp_path / "new" / "run.journal"
    session = start_engine(
        EngineSpec(sim_config(base_url), source=tmp_path / "in.csv", journal_path=journal)
    )
    try:
        assert mode(engine_log_path(journal)) == 0o600
        assert mode(journal) == 0o600
        assert mode(journal.parent) == 0o700
        # a headless run on the console's journal is refused; reading it is not
        with pytest.raises(JournalError, match=f"in use by PID {session.process.pid} since"):
            Journal(journal)
        Journal(journal, read_only=True).close()
    finally:
        await session.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_password_in_the_base_url_is_not_echoed(tmp_path: Path, scheme: str) -> None:
    done = subprocess.run(  # the real command: config validation, then the error it prints
        [sys.executable, "-m", "canvas_tui", "sync", "x.csv"],
        cwd=tmp_path,
        env={
            **os.environ,
            "CANVAS_BASE_URL": f"{scheme}://registrar:hunter2-pw@canvas.example.edu",
            "CANVAS_API_TOKEN": "t",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert "must not carry a user name or password" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr
    assert "registrar" not in done.stdout + done.stderr
