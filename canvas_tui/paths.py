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
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import platformdirs

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


def config_search_path(env: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """(where it came from, path) in the order they are tried."""
    env = os.environ if env is None else env
    out: list[tuple[str, Path]] = []
    if env.get(ENV_CONFIG):
        out.append((f"${ENV_CONFIG}", Path(env[ENV_CONFIG]).expanduser()))
    out.append(("the current directory", Path(CONFIG_NAME)))
    out.append(("the user config directory", user_config_file()))
    return out
