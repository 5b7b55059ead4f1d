"""Shared fixtures. Service-backed tests skip on a laptop without the service, never in CI."""

from __future__ import annotations

import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def require_service(name: str, reachable: bool, reason: str) -> None:
    """Skip when a service is down, except in CI, where a missing service is a failure."""
    if reachable:
        return
    if IN_CI:
        pytest.fail(f"{name} is required in CI but unreachable: {reason}")
    pytest.skip(f"{name} not reachable ({reason}); start it to run this test")


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
