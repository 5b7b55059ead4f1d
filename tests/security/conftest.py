"""A distinctive token the simulator accepts, and a way to run `canvas-tui sync` in process."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from canvas_tui.cli import build_parser
from canvas_tui.headless import main

SECRET = f"s3cret-{secrets.token_hex(12)}"


def run_sync(argv: list[str]) -> int:
    return main(build_parser().parse_args(["sync", *argv]))


def leaks(blob: bytes | str) -> bool:
    data = blob.encode() if isinstance(blob, str) else blob
    # The token, or any long slice of it, in text or UTF-16 (SQLite may store either).
    needles = [SECRET, SECRET[7:], SECRET[-16:]]
    return any(n.encode() in data or n.encode("utf-16-le") in data for n in needles)


def files_leaking(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and leaks(p.read_bytes())]


@pytest.fixture
def secret() -> str:
    return SECRET
