"""The API token appears in no log line, journal byte, report, exception text or progress output
(JSON and rich), whatever happens during the run: successes, failures, faults and a rejected token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.config import load_config
from canvas_tui.engine.session import open_session
from canvas_tui.simulator import FaultRates, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv
from tests.security.conftest import files_leaking, leaks, run_sync


@pytest.fixture
def served(tmp_path: Path, secret: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    world = World.generate(7)
    app = build_app(
        SimConfig(
            time_scale=50,
            tokens=(secret,),
            faults=FaultRates(error_500=0.05, html_503=0.03, reset_after=0.03),
        ),
        world,
    )
    write_csv(tmp_path / "in.csv", world, 60, bad=2, unknown_users=3)
    monkeypatch.chdir(tmp_path)
    with serve_in_thread(app) as base_url:
        monkeypatch.setenv("CANVAS_BASE_URL", base_url)
        monkeypatch.setenv("CANVAS_API_TOKEN", secret)
        yield base_url


def test_token_in_no_output_journal_report_or_log(
    served: str,
    tmp_path: Path,
    secret: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # every library's debug logging too (httpx, httpcore)
    code = run_sync(
        ["in.csv", "--journal", "a.journal", "--report", "a.json", "--log-format", "json"]
    )
    assert code == 1  # bad rows and unknown users failed; the run itself worked
    code = run_sync(
        ["in.csv", "--journal", "b.journal", "--report", "b.json", "--log-format", "rich"]
    )
    assert code == 1
    # A rejected token: its text must not leak either.
    monkeypatch.setenv("CANVAS_API_TOKEN", secret + "-revoked")
    code = run_sync(["in.csv", "--journal", "c.journal", "--log-format", "json"])
    assert code == 3
    out, err = capfd.readouterr()
    assert '"event": "summary"' in out and "done" in out  # JSON and rich both wrote progress
    assert "\x1b[" in out and " done, " in out  # the rich progress and summary
    assert "Token rejected" in out
    assert not leaks(out) and not leaks(err)
    assert caplog.records, "debug logging was captured"
    assert not leaks(caplog.text)
    assert not leaks(" ".join(str(r.args) for r in caplog.records))
    journals = sorted(tmp_path.glob("*.journal"))
    assert len(journals) == 2  # the rejected token's run sent nothing, so kept no journal
    assert (tmp_path / "a.failures.csv").exists()
    assert files_leaking(tmp_path) == []


async def test_token_in_no_exception_or_repr(served: str, secret: str, tmp_path: Path) -> None:
    config = load_config(None)
    assert config.canvas.token is not None and config.canvas.token.reveal() == secret
    session = open_session(config, journal_path=tmp_path / "x.journal")
    texts = [repr(config), str(config), repr(session), repr(session.client), repr(session.runner)]
    async with CanvasClient(served, secret + "-wrong") as client:
        with pytest.raises(CanvasError) as caught:
            await client.whoami()
    texts += [str(caught.value), repr(caught.value), str(caught.value.args)]
    with pytest.raises(CanvasError) as refused:
        CanvasClient("http://canvas.example.edu", secret)
    texts += [str(refused.value), repr(refused.value)]
    await session.close()
    assert not any(leaks(t) for t in texts), [t for t in texts if leaks(t)]
