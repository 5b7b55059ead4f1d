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
