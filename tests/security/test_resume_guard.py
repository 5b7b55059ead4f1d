"""A journal resumes only against the Canvas, and with the sending semantics, it was run with.

Resuming a journal of Canvas A against Canvas B used to exit 0 with "done N": the records done
in A counted as done in B, which had none of them. Now the real `canvas-tui sync` refuses with
exit 2 and says how to start fresh, before any request reaches B."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from canvas_tui.simulator import SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv
from tests.helpers import eventually, exited, start_sync

pytestmark = pytest.mark.slow

RECORDS = 300


def _errors(out: str) -> list[str]:
    return [e["message"] for e in map(json.loads, out.splitlines()) if e["event"] == "error"]


def _killed_part_way(tmp_path: Path, app: Simulator, base_url: str) -> None:
    """`sync` against `base_url`, killed once some records are done (a crashed run)."""
    proc = start_sync(tmp_path, base_url, "in.csv", "--journal", "j.sqlite")
    eventually(
        lambda: app.stats()["enrollments_created"] >= 20,
        what="20 enrollments created",
        abort_if=exited(proc),
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # what was on the wire at the kill reaches the server
    eventually(lambda: not app.stats()["in_flight"], what="the requests in flight at the kill")


def test_resume_against_another_canvas_exits_2_and_sends_nothing(tmp_path: Path) -> None:
    world = World.generate(7)
    write_csv(tmp_path / "in.csv", world, RECORDS)
    canvas_a = build_app(SimConfig(time_scale=2), world)
    canvas_b = build_app(SimConfig(time_scale=50), World.generate(7))
    with serve_in_thread(canvas_a) as url_a, serve_in_thread(canvas_b) as url_b:
        _killed_part_way(tmp_path, canvas_a, url_a)

        resume = start_sync(tmp_path, url_b, "in.csv", "--journal", "j.sqlite")
        out, err = resume.communicate(timeout=60)
        assert resume.returncode == 2, (out, err)
        (message,) = _errors(out)
        assert f"base_url {url_a} (now {url_b})" in message
        assert "new --journal path" in message  # how to start fresh
        assert canvas_b.stats()["requests"] == 0

        # The same Canvas resumes, and the report names it.
        again = start_sync(tmp_path, url_a, "in.csv", "--journal", "j.sqlite", "--report", "r.json")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, (out[-2000:], err[-2000:])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["base_url"] == url_a
    assert canvas_a.stats()["duplicates"] == 0


def test_resume_with_other_semantics_exits_2(tmp_path: Path) -> None:
    world = World.generate(7)
    write_csv(tmp_path / "in.csv", world, RECORDS)
    canvas = build_app(SimConfig(time_scale=2), world)
    (tmp_path / "notify.toml").write_text("[sync]\nnotify = true\n")
    with serve_in_thread(canvas) as url:
        _killed_part_way(tmp_path, canvas, url)
        sent = canvas.stats()["requests"]
        resume = start_sync(tmp_path, url, "-c", "notify.toml", "--journal", "j.sqlite")
        out, err = resume.communicate(timeout=60)
        assert resume.returncode == 2, (out, err)
        assert "notify false (now true)" in _errors(out)[0]
        assert canvas.stats()["requests"] == sent
