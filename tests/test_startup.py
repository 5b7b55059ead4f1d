"""What every canvas-tui process does first: large blocks mapped on their own (issue 14)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# In a fresh interpreter: free a 24 MiB block (glibc then raises its mmap threshold past 4 MiB
# unless it is pinned), allocate 4 MiB, and print how many bytes are mapped on their own.
_PROBE = """
import ctypes, sys
from canvas_tui.startup import map_large_blocks
pinned = map_large_blocks() if sys.argv[1] == "pin" else False
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
info = ctypes.CDLL(None).mallinfo2
info.restype = Info
big = bytearray(24 << 20)
del big
block = bytearray(4 << 20)
print(int(pinned), info().hblkhd)
"""


def _probe(mode: str) -> tuple[bool, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env={}
    )
    pinned, mapped = done.stdout.split()
    return pinned == "1", int(mapped)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc's malloc only",
)
def test_a_block_freed_does_not_move_the_next_ones_into_the_heap() -> None:
    """By default glibc takes the size of a mapped block freed as its new threshold, so a pass
    that freed a large index puts the next pass's arrays in a thread's heap, where what is
    freed stays resident. Pinned, a 4 MiB block is still mapped (and unmapped when freed)."""
    pinned, mapped = _probe("pin")
    assert pinned and mapped >= 4 << 20
    default, mapped = _probe("default")
    assert not default and mapped < 4 << 20  # what the pin is for


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from canvas_tui.startup import map_large_blocks

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert map_large_blocks() is False
