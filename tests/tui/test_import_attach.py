"""A term load run headless (`sync --via sis-import`, as cron runs it), watched and aborted from a
console attached with control: the panel follows Canvas's import, and p's abort reaches Canvas
through the sync's own engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from canvas_tui.engine.attach import attach_engine, socket_path
from canvas_tui.engine.state import ImportStatus, Phase
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.screens.dialogs import ChoiceScreen, ConfirmScreen
from canvas_tui.tui.session import ConsoleSession
from canvas_tui.tui.widgets.import_panel import ImportPanel
from tests.engine.workload import write_csv
from tests.helpers import eventually, eventually_async, exited, lines
from tests.tui.conftest import SIZE, text_of

ROWS = 300


def _app(journal: Path) -> ConsoleApp:
    session = attach_engine(journal, control=True)

    async def opener() -> ConsoleSession:
        return session

    return ConsoleApp(
        opener,
        description=f"attached · {journal}",
        journal_path=session.journal_path,
        attached=True,
    )


def _sync_to_file(cwd: Path, url: str, journal: Path, out: Path) -> subprocess.Popen[str]:
    """`sync --via sis-import` with its JSON lines in a file: a pipe nobody reads until the end
    would fill with the aborted rows' lines and hold the sync at a write."""
    argv = ["in.csv", "--journal", str(journal), "--via", "sis-import", "--log-format", "json"]
    with out.open("w") as out_file:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "canvas_tui", "sync", *argv],
            cwd=cwd,
            env={**os.environ, "CANVAS_BASE_URL": url, "CANVAS_API_TOKEN": ADMIN_TOKEN},
            stdout=out_file,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def _import(app: ConsoleApp) -> ImportStatus | None:
    return app.state.sis_import if app.state is not None else None


async def test_an_attached_console_aborts_a_headless_sis_import(tmp_path: Path) -> None:
    world = World.generate(7)
    # 20 rows a second at this time scale: the import runs for ~15 s unless aborted
    sim = build_app(SimConfig(seed=7, time_scale=10.0, sis_import_rate=2.0), world)
    write_csv(tmp_path / "in.csv", world, ROWS)
    journal = tmp_path / "run.journal"
    with serve_in_thread(sim) as url:
        out_path = tmp_path / "sync.out"
        proc = _sync_to_file(tmp_path, url, journal, out_path)
        try:
            eventually(
                lambda: socket_path(journal).exists() and bool(sim.sis_imports.imports),
                what="the sync's attach socket and its upload",
                abort_if=exited(proc),
            )
            app = _app(journal)
            async with app.run_test(size=SIZE) as pilot:

                def importing() -> ImportStatus | None:
                    status = _import(app)
                    ok = status is not None and status.workflow_state == "importing"
                    return status if ok else None

                await eventually_async(importing, what="Canvas importing", pause=pilot.pause)
                panel = app.query_one(ImportPanel)
                assert panel.display and "IMPORTING" in text_of(panel)
                await pilot.press("p")
                assert isinstance(app.screen, ChoiceScreen)
                await pilot.press("enter")  # abort…
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("y")
                await eventually_async(
                    lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
                    what="the sync's run ended, on the console",
                    timeout=60,
                    pause=pilot.pause,
                    detail=lambda: (app.state and app.state.phase, _import(app), proc.poll()),
                )
                status = _import(app)
                assert status is not None and status.workflow_state == "aborted"
                assert "ABORTED" in text_of(panel)
                state = app.state
                assert state is not None and state.finished == state.total
                await pilot.press("q")  # attached: only this console goes
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1  # the sync ended with failed records: the aborted rows
    assert sim.stats()["requests_by_endpoint"].get("abort_sis_import") == 1
    last = lines(out_path.read_text())[-1]
    assert last["counts"]["failed"] > 0 and last["counts"]["pending"] == 0
