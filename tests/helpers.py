"""Helpers shared across the test packages: waiting for a condition, fast simulator configs,
the CLI in this process or a subprocess.

The suite's rules (tests/test_suite_layout.py checks the last two):
- wait with `eventually` (the condition comes true) or `never_within` (it stays false for a
  window), never with a fixed sleep followed by an assertion;
- shared code and data live in helper modules (this one, tests/engine/helpers.py, ...) and
  conftest files; a test module never imports from another test module;
- test module names are unique across the packages.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from canvas_tui.cli import build_parser
from canvas_tui.headless import main
from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, SimConfig

T = TypeVar("T")

# pytest-textual-snapshot's `snap_compare` fixture: (app, terminal_size=..., run_before=...) -> match
SnapCompare = Callable[..., bool]

# How often a condition is looked at; short, so a wait ends soon after the condition holds.
INTERVAL = 0.02


class _Watch:
    """One wait's clock and its messages, shared by the sync and async waits below, which differ
    only in how they pause. `abort_if` ends a wait at once when it returns something true (a
    process died, a task ended; a string says why); `detail` is called only when a wait fails, to
    show the state it failed in."""

    def __init__(
        self,
        what: str,
        seconds: float,
        abort_if: Callable[[], object] | None = None,
        detail: Callable[[], object] | None = None,
    ) -> None:
        self.what = what
        self.seconds = seconds
        self.abort_if = abort_if
        self.detail = detail
        self.started = time.monotonic()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _fail(self, message: str) -> AssertionError:
        if self.detail is not None:
            message = f"{message}; state: {self.detail()!r}"
        return AssertionError(message)

    def arrived(self, predicate: Callable[[], T | None]) -> T | None:
        """The predicate's value once it is true; None to look again; fails on abort or timeout."""
        if value := predicate():
            return value
        reason = self.abort_if() if self.abort_if is not None else None
        if reason:
            why = reason if isinstance(reason, str) else "abort_if held"
            raise self._fail(f"gave up waiting for {self.what} after {self._elapsed():.2f}s: {why}")
        if self._elapsed() >= self.seconds:
            raise self._fail(f"timed out after {self.seconds:g}s waiting for {self.what}")
        return None

    def quiet(self, predicate: Callable[[], object]) -> bool:
        """True while the window lasts and `predicate` stays false; fails as soon as it is true."""
        if predicate():
            raise self._fail(
                f"{self.what} happened after {self._elapsed():.2f}s;"
                f" it must not within {self.seconds:g}s"
            )
        return self._elapsed() < self.seconds


def eventually(
    predicate: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = INTERVAL,
    abort_if: Callable[[], object] | None = None,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll `predicate` until it returns something true, and return that; fail with a message
    naming `what` was awaited after `timeout` seconds. For waits on other threads or processes."""
    watch = _Watch(what, timeout, abort_if, detail)
    while (value := watch.arrived(predicate)) is None:
        time.sleep(interval)
    return value


def never_within(
    predicate: Callable[[], object], seconds: float, *, what: str, interval: float = INTERVAL
) -> None:
    """The negative check: `predicate` (what must not happen) stays false for `seconds`."""
    watch = _Watch(what, seconds)
    while watch.quiet(predicate):
        time.sleep(interval)


def exited(proc: subprocess.Popen[str]) -> Callable[[], str | None]:
    """For `abort_if`: nothing while `proc` runs; once it has ended, its exit code and output."""

    def check() -> str | None:
        if proc.poll() is None:
            return None
        out, err = proc.communicate()
        return (
            f"the process exited with {proc.returncode}: {(out or '')[-2000:]}{(err or '')[-2000:]}"
        )

    return check


async def eventually_async(
    predicate: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 30.0,  # noqa: ASYNC109 - the bound is part of what the failure reports
    interval: float = INTERVAL,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
    abort_if: Callable[[], object] | None = None,
    detail: Callable[[], object] | None = None,
) -> T:
    """`eventually` that lets the event loop run between looks (`pause=pilot.pause` in an app
    test, so the screen refreshes as it would for a user)."""
    watch = _Watch(what, timeout, abort_if, detail)
    while (value := watch.arrived(predicate)) is None:
        await pause(interval)
    return value


async def never_within_async(
    predicate: Callable[[], object],
    seconds: float,
    *,
    what: str,
    interval: float = INTERVAL,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """`never_within` that lets the event loop run between looks."""
    watch = _Watch(what, seconds)
    while watch.quiet(predicate):
        await pause(interval)


def fast_config(**overrides: Any) -> SimConfig:
    """Exact costs and no latency, unless a test asks otherwise."""
    settings: dict[str, Any] = {
        "time_scale": 1000.0,
        "cost_jitter": 0.0,
        "latency": LatencyModel.uniform(0.0),
    }
    settings.update(overrides)
    return SimConfig(**settings)


def write_rows(path: Path, rows: Sequence[Sequence[object]], header: Sequence[str]) -> Path:
    """A CSV source: the header, then the rows."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def damage_pages(journal: Path, *, first: int = 2) -> None:
    """Overwrite part of every other page from page `first` on with garbage: a journal whose
    page check fails (and whose reads may)."""
    data = bytearray(journal.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 8 * page
    for n in range(first, len(data) // page, 2):
        data[n * page + 8 : n * page + 200] = bytes([0xA5]) * 192
    journal.write_bytes(bytes(data))


def start_sync(cwd: Path, base_url: str, *argv: str, **env: str) -> subprocess.Popen[str]:
    """`canvas-tui sync ARGV...` in its own process, run in `cwd` against the simulator at
    `base_url` with its admin token (`env`: more environment); stdout and stderr are piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "canvas_tui", "sync", *argv],
        cwd=cwd,
        env={**os.environ, "CANVAS_BASE_URL": base_url, "CANVAS_API_TOKEN": ADMIN_TOKEN, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sync(*argv: str) -> int:
    """`canvas-tui sync ARGV...` in this process; its exit code."""
    return main(build_parser().parse_args(["sync", *argv]))


def lines(out: str) -> list[dict[str, Any]]:
    """The JSON lines `sync` writes when stdout is not a terminal."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]
