"""Shared fixtures. Service-backed tests skip on a laptop without the service, never in CI."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.config import Secret
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv

IN_CI = bool(os.environ.get("CI"))


def require_service(name: str, reachable: bool, reason: str) -> None:
    """Skip when a service is down, except in CI, where a missing service is a failure."""
    if reachable:
        return
    if IN_CI:
        pytest.fail(f"{name} is required in CI but unreachable: {reason}")
    pytest.skip(f"{name} not reachable ({reason}); start it to run this test")


def listening(port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` (a test service)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _own_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journals default to the user state directory and configs are found in the user config
    directory: give every test its own, so none reads or writes the real ones."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("CANVAS_TUI_CONFIG", raising=False)


@pytest.fixture(autouse=True)
def _own_known_secrets() -> Iterator[None]:
    """Log filters mask every value a Secret ever held in the process. A test's token (some are
    one letter) must not mask the next test's logs."""
    known = set(Secret._known)
    yield
    Secret._known.clear()
    Secret._known.update(known)


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """For `sync` in this process: the simulator on loopback, its URL and token in the
    environment, and good.csv (40 rows) and mixed.csv (50: 2 invalid, 2 unknown users) in the
    current directory. (Packages that need another simulator define their own `sim`.)"""
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "good.csv", world, 40)
    write_csv(tmp_path / "mixed.csv", world, 50, bad=2, unknown_users=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)
    with serve_in_thread(app) as base_url:
        monkeypatch.setenv("CANVAS_BASE_URL", base_url)
        yield app
