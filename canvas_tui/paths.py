"""Where canvas-tui looks for its config and keeps its journals, per the platform's conventions.

Config: `$CANVAS_TUI_CONFIG`, then `./canvas-tui.toml`, then the user config directory
(`$XDG_CONFIG_HOME/canvas-tui/canvas-tui.toml`, by default `~/.config/...`, on Linux and macOS).
Journals: the user state directory (`$XDG_STATE_HOME/canvas-tui/runs`, by default
`~/.local/state/...`), never the current directory, so a container with a read-only root
filesystem and a writable home (or XDG_STATE_HOME volume) works.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import platformdirs

if TYPE_CHECKING:
    from canvas_tui.config import Config

APP: Final = "canvas-tui"
ENV_CONFIG: Final = "CANVAS_TUI_CONFIG"
CONFIG_NAME: Final = "canvas-tui.toml"


def _dirs() -> platformdirs.PlatformDirs:
    if sys.platform == "darwin":  # operators there expect ~/.config, as on Linux
        from platformdirs.unix import Unix

        return Unix(APP, appauthor=False)  # type: ignore[return-value]
    return platformdirs.PlatformDirs(APP, appauthor=False)


def user_config_file() -> Path:
    return Path(_dirs().user_config_path) / CONFIG_NAME


def default_journal_dir() -> Path:
    return Path(_dirs().user_state_path) / "runs"


def default_journal_path(directory: Path | None = None) -> Path:
    """`<user state dir>/runs/<UTC timestamp>.journal`, never an existing file."""
    directory = directory or default_journal_dir()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{stamp}.journal"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}-{n}.journal"
    return path


def journal_path_for(config: Config, journal_path: Path | None = None) -> Path:
    """The journal a run uses: the one asked for, the config's, else a new one in journal_dir."""
    return Path(
        journal_path or config.sync.journal or default_journal_path(config.sync.journal_dir)
    )


def config_search_path(env: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """(where it came from, path) in the order they are tried."""
    env = os.environ if env is None else env
    out: list[tuple[str, Path]] = []
    if env.get(ENV_CONFIG):
        out.append((f"${ENV_CONFIG}", Path(env[ENV_CONFIG]).expanduser()))
    out.append(("the current directory", Path(CONFIG_NAME)))
    out.append(("the user config directory", user_config_file()))
    return out
