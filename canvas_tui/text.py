"""Text from outside (Canvas's messages, source fields, answers) made safe to draw or print.

A Canvas error message or a CSV field can carry terminal control sequences: `ESC]52;c;…ESC\\`
writes the operator's clipboard, `ESC]2;…` retitles the window, and a bare CR or backspace
overwrites what is on screen. Rich and Textual pass most of them through, so every string that
came from outside goes through `printable` at the drawing and printing boundary (the headless
reporter, the console's tables and screens). JSON output needs nothing: json.dumps escapes them.
"""

from __future__ import annotations

import re

# C0 except tab, DEL, and C1 (which some terminals also obey, e.g. 0x9b as CSI, 0x9d as OSC)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """`text` with every control character but tab shown as `\\xNN`: it can move no cursor,
    start no escape sequence and break no table row, and the operator still sees it was there."""
    if _CONTROL.search(text) is None:  # the common case: one scan, no copy
        return text
    return _CONTROL.sub(_visible, text)
