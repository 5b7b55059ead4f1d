"""What every canvas-tui process does first, before it imports anything heavy."""

from __future__ import annotations

import os
import sys


def skip_unused_imports() -> None:
    """httpx imports its own command-line client (click, pygments and rich) whenever those are
    installed, and uvicorn brings them: ~0.1 s of every start-up, the engine process's included,
    for a tool canvas-tui never runs. A None in `sys.modules` makes that one import fail, and
    httpx then defines a stub `httpx.main` instead (httpx/__init__.py catches the ImportError;
    tests/test_import_hygiene.py checks that it still does)."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


# glibc's mallopt parameter: requests at least this large are mapped on their own
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def map_large_blocks() -> bool:
    """Pin glibc's mmap threshold, so every block of 256 KiB or more (the duplicate index, the
    plan's per-row arrays, a decoded CSV block) is mapped on its own and unmapped when freed.

    By default glibc raises the threshold to the size of each mapped block freed (up to 32 MiB):
    after the first pass over a million rows frees its 24 MiB index, the next pass's arrays land
    in the malloc heaps instead, one heap per thread that allocates, where what a pass frees
    stays resident and in holes the next growth may not fit. How much that kept depended on
    which threads ran which pass and when, so a million-row `sync` peaked anywhere from 118 to
    201 MB (issue 14); with the threshold pinned, the heaps stay at ~13 MB. An explicit
    MALLOC_MMAP_THRESHOLD_ in the environment wins. Returns whether the threshold was set (not
    on other C libraries or systems)."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
