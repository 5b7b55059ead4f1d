"""`canvas-tui simulate` answers real HTTP on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from canvas_tui.cli import build_parser
from canvas_tui.simulator import ADMIN_TOKEN, build_app, serve
from tests.helpers import eventually, exited
from tests.simulator.conftest import USER_AGENT, client_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_simulate_serves_real_http(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "canvas_tui", "simulate", "--port", str(port),
         "--time-scale", "50", "--throttle-status", "403", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def stats_once_up() -> dict[str, object] | None:
            try:
                found: dict[str, object] = httpx.get(f"{base}/__sim__/stats", timeout=1).json()
            except httpx.TransportError:
                return None
            return found

        stats = eventually(
            stats_once_up,
            what="the simulator to answer",
            timeout=20,
            interval=0.1,
            abort_if=exited(process),
        )
        assert stats["throttle_status"] == 403 and stats["time_scale"] == 50
        headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = httpx.get(
            f"{base}/api/v1/courses/sis_course_id:E411208/enrollments", headers=headers
        )
        assert response.status_code == 200
        assert response.headers["link"].startswith(f"<{base}/api/v1/courses/")
        assert "x-rate-limit-remaining" in response.headers
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/api/v1/" in out
    assert ADMIN_TOKEN not in out + err  # the token's location is printed, never the token
    token_file = tmp_path / "canvas-tui" / "simulator-token"
    assert str(token_file) in out
    assert token_file.read_text().strip() == ADMIN_TOKEN
    assert token_file.stat().st_mode & 0o077 == 0


def test_simulate_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["simulate", "--faults", "boom=1"])
    assert serve.main(args) == 2  # before anything is served
    assert "unknown fault 'boom'" in capsys.readouterr().err


def test_cli_options_reach_the_config() -> None:
    args = build_parser().parse_args(
        ["simulate", "--time-scale", "4", "--hwm", "700", "--post-cost", "1.0", "--latency", "0.5",
         "--faults", "500=0.1,reset=0.2", "--token", "bench-token", "--seed", "9"]
    )  # fmt: skip
    config = serve.config_from_args(args)
    assert (config.time_scale, config.hwm, config.post_cost, config.seed) == (4, 700, 1.0, 9)
    assert config.latency.create == config.latency.list == 0.5
    assert config.faults.error_500 == 0.1 and config.faults.reset_after == 0.1
    assert config.tokens == ("bench-token",)


async def test_no_sis_token_option_issues_a_token_without_sis_rights() -> None:
    """`--no-sis-token T`: an admin token whose answers carry no SIS ids, as Canvas answers a
    token without read_sis (lib/api/v1/enrollment.rb)."""
    args = build_parser().parse_args(["simulate", "--no-sis-token", "plain-admin"])
    config = serve.config_from_args(args)
    assert config.no_sis_tokens == ("plain-admin",)
    app = build_app(replace(config, world_users=50, world_courses=4))
    async with client_for(app, "plain-admin") as client:
        listed = await client.get("/api/v1/courses/sis_course_id:E411208/enrollments")
    assert listed.status_code == 200 and listed.json()
    assert all("sis_user_id" not in e and "sis_import_id" not in e for e in listed.json())
