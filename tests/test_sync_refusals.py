"""What the real `canvas-tui sync` says when it cannot start: a clear message and exit 2
(usage, config or input error, nothing sent), never a traceback with exit 1 ("records failed").
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.engine.journal import Journal, JournalError
from canvas_tui.simulator import World
from canvas_tui.sources import CsvSource
from tests.engine.workload import write_csv
from tests.helpers import damage_pages, start_sync

NOWHERE = "http://127.0.0.1:9"  # these runs must stop before any request


def _refused(cwd: Path, *argv: str) -> str:
    """Run sync; assert it exits 2 without a traceback; returns its error message."""
    proc = start_sync(cwd, NOWHERE, *argv)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err, err
    errors = [e["message"] for e in map(json.loads, out.splitlines()) if e["event"] == "error"]
    assert len(errors) == 1, out
    return str(errors[0])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    write_csv(tmp_path / "in.csv", World.generate(7), 300)
    return tmp_path / "in.csv"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_timeout_that_is_not_a_number_exits_2(tmp_path: Path, source: Path, value: str) -> None:
    (tmp_path / "c.toml").write_text(f"[canvas]\ntimeout = {value}\n")
    message = _refused(tmp_path, "in.csv", "-c", "c.toml")
    assert "canvas.timeout: expected a number" in message


def test_damaged_journal_pages_exit_2(tmp_path: Path, source: Path) -> None:
    journal = tmp_path / "j.journal"
    store = Journal(journal)
    store.load(CsvSource(source), description="in.csv")
    store.close()
    damage_pages(journal)

    message = _refused(tmp_path, "in.csv", "--journal", "j.journal")
    assert "j.journal: the journal is damaged" in message
    assert "new --journal path" in message


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only file system where mount(2) is allowed (root); otherwise a
    directory without write permission (enough for anyone but root)."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted = False
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            mounted = (
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            )
        if not mounted:
            pytest.skip("root without mount(2): no way to make a directory read-only here")
    else:
        target.chmod(0o555)
    try:
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)
        else:
            target.chmod(0o755)


@pytest.mark.parametrize("journal", ["ro/j.journal", "ro/new/j.journal"])
def test_a_read_only_journal_directory_exits_2(
    tmp_path: Path, source: Path, read_only_dir: Path, journal: str
) -> None:
    message = _refused(tmp_path, "in.csv", "--journal", journal)
    # sync's output-path check (outputs.py) or the journal's own, whichever sees it first
    assert journal in message
    assert "not writable" in message or "cannot write" in message
    assert "not a canvas-tui journal" not in message
    # the console's engine opens journals without that check: the journal says it itself
    with pytest.raises(JournalError, match=f"cannot write the journal {tmp_path / journal}"):
        Journal(tmp_path / journal)
