"""The `requests` a run reports are every request Canvas saw: the roster reads that chose the
plan, the token check, the records' attempts and their retries. The simulator's own counter is
the judge (it once saw 1,115 where the report said 1,066)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas_tui.cli import build_parser
from canvas_tui.headless import main
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv


def sync(*argv: str) -> int:
    return main(build_parser().parse_args(["sync", *argv]))


@pytest.mark.parametrize(
    ("mode", "faults"),
    [
        ("--plan", FaultRates()),
        ("--no-plan", FaultRates()),
        ("--plan", FaultRates(error_500=0.1)),  # retries count too
    ],
)
def test_reported_requests_match_the_simulators_count(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    faults: FaultRates,
) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(seed=3, time_scale=50, faults=faults), world)
    write_csv(tmp_path / "in.csv", world, 120, bad=2, unknown_users=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)
    with serve_in_thread(app) as base_url:
        monkeypatch.setenv("CANVAS_BASE_URL", base_url)
        assert sync("in.csv", mode, "--journal", "j.journal", "--report", "r.json") == 1
        seen = app.stats()["requests"]
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        report = json.loads(Path("r.json").read_text())
        assert summary["mode"] == mode.removeprefix("--").replace("no-plan", "full")
        assert summary["requests"] == seen
        assert report["requests"] == seen

        # The same journal again (nothing left to send): the count carries over.
        assert sync("in.csv", "--journal", "j.journal", "--report", "r.json") == 1
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["requests"] == json.loads(Path("r.json").read_text())["requests"]
        assert summary["requests"] == app.stats()["requests"]
