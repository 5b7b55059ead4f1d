"""Files canvas-tui ships: in a wheel they live inside the package (importlib.resources); in a
checkout they are read where the repository keeps them (examples/, the root)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

_REPO: Final = Path(__file__).resolve().parents[1]

# name -> (path inside the package, as the wheel has it; path in the repository)
SHIPPED: Final = {
    "demo.csv": ("data/demo-enrollments.csv", "examples/enrollments.csv"),
    "config.example.toml": ("data/config.example.toml", "config.example.toml"),
}


class ResourceMissing(Exception):
    """The install is incomplete: a file canvas-tui ships is not there."""


def resource_path(name: str) -> Path:
    """A real file for `name` (the engine process opens it by path)."""
    packaged, in_repo = SHIPPED[name]
    ref = resources.files("canvas_tui").joinpath(packaged)
    if ref.is_file():
        return Path(str(ref))  # wheels install unpacked, never as a zip
    path = _REPO / in_repo
    if path.is_file():
        return path
    raise ResourceMissing(f"{packaged}: missing from this install of canvas-tui; reinstall it")


def resource_text(name: str) -> str:
    return resource_path(name).read_text(encoding="utf-8")
