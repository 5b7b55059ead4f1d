"""Terminal escapes from outside never reach the terminal: a CSV field or a Canvas error message
carrying `ESC]52;c;…` (write the clipboard) or `ESC]2;…` (retitle the window) is shown as text.
The headless run is checked on the bytes its process writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.text import printable
from tests.engine.workload import HEADER, fresh_pairs
from tests.helpers import start_sync, write_rows

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x1b\\"  # OSC 52: put "rm -rf ~" on the clipboard
TITLE = "\x1b]2;pwned\x07"  # OSC 2: the window title
C1_CSI = "\x9b31m"  # the one-byte CSI some terminals obey


class HostileErrors:
    """A gateway in front of the simulator that appends escapes to every 404's message."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if scope["type"] != "http" or not held or held[0].get("status") != 404:
            for message in held:
                await send(message)
            return
        body = json.dumps({"errors": [{"message": f"not found{CLIPBOARD}{TITLE}{C1_CSI}"}]})
        data = body.encode()
        start = dict(held[0])
        start["headers"] = [
            *((k, v) for k, v in held[0]["headers"] if k != b"content-length"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send(start)
        await send({"type": "http.response.body", "body": data})


def test_printable_shows_controls_as_text() -> None:
    shown = printable(f"a\tb{CLIPBOARD}{TITLE}{C1_CSI}\r\n\0")
    assert "\t" in shown
    assert not any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "\\x1b]52;c;" in shown and "\\x9b" in shown and "\\x00" in shown
    assert printable("plain é 名") == "plain é 名"


@pytest.mark.parametrize("log_format", ["rich", "json"])
def test_headless_output_carries_no_escape_from_a_field_or_a_message(
    tmp_path: Path, log_format: str
) -> None:
    world = World.generate(7)
    pairs = fresh_pairs(world, 3)
    rows = [[course, user, "student", section, "active", "x"] for user, course, section in pairs]
    course, _, section = pairs[0][1], pairs[0][0], pairs[0][2]
    # an unknown user reaches Canvas, whose 404 carries the hostile message; ids holding control
    # characters never reach Canvas (a row error) but are still echoed in the output
    rows.append([course, "GHOST", "student", section, "active", "x"])
    rows.append([course, f"NOBODY{CLIPBOARD}{TITLE}", f"student{C1_CSI}", section, "active", "x"])
    write_rows(tmp_path / "in.csv", rows, HEADER)
    app = build_app(SimConfig(time_scale=50), world)
    with serve_in_thread(HostileErrors(app)) as base_url:
        proc = start_sync(
            tmp_path, base_url, "in.csv", "--log-format", log_format, "--journal", "j"
        )
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    written = (out + err).encode("utf-8", "surrogateescape")
    assert b"\x1b]" not in written  # no OSC at all: rich itself only writes CSI colours
    assert b"\x07" not in written and "\x9b".encode() not in written
    assert b"GHOST" in written and b"NOBODY" in written
    if log_format == "rich":
        assert b"\\x1b]52;c;" in written  # shown, not obeyed
        assert b"found\\x1b]52;c;" in written  # Canvas's (hostile) message, cleaned
