"""Helpers shared across the test packages: fast simulator configs, the CLI in a subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, SimConfig


def fast_config(**overrides: Any) -> SimConfig:
    """Exact costs and no latency, unless a test asks otherwise."""
    settings: dict[str, Any] = {
        "time_scale": 1000.0,
        "cost_jitter": 0.0,
        "latency": LatencyModel.uniform(0.0),
    }
    settings.update(overrides)
    return SimConfig(**settings)


def write_rows(path: Path, rows: list[list[str]], header: list[str]) -> Path:
    """A CSV source: the header, then the rows."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


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
