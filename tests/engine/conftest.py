"""Engine scenarios run the real client against the real simulator (in process or on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from canvas_tui.canvas.governor import Governor
from canvas_tui.config import CanvasConfig, Config, Secret, SyncConfig
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.protocol import EngineSpec
from canvas_tui.engine.session import Session, open_session
from canvas_tui.simulator import ADMIN_TOKEN
from canvas_tui.sources import CsvSource


def sim_config(
    base_url: str = "http://127.0.0.1",
    token: str = ADMIN_TOKEN,
    *,
    timeout: float = 30.0,
    max_concurrency: int | None = None,
) -> Config:
    return Config(
        canvas=CanvasConfig(base_url=base_url, token=Secret(token), timeout=timeout),
        sync=SyncConfig(max_concurrency=max_concurrency),
    )


def session_for(
    csv_path: Path,
    journal: Path,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    config: Config | None = None,
    time_scale: float = 1.0,
) -> Session:
    """A session on the simulator; the governor's leak runs as fast as the time-scaled bucket's."""
    return open_session(
        config or sim_config(),
        source=CsvSource(csv_path),
        journal_path=journal,
        transport=transport,
        governor=Governor(leak=10.0 * time_scale),
    )


def engine_spec(
    base_url: str,
    csv_path: Path | None,
    journal: Path,
    *,
    time_scale: float = 10.0,
    **kwargs: object,
) -> EngineSpec:
    """What the console hands the engine process: the simulator at `base_url` (served at
    `time_scale`, which the governor's leak matches), the source and the journal."""
    return EngineSpec(
        sim_config(base_url),
        source=csv_path,
        journal_path=journal,
        governor_leak=10.0 * time_scale,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal in the test's directory, closed afterwards."""
    j = Journal(tmp_path / "run.journal")
    yield j
    j.close()
