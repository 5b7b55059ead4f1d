"""The wheel, installed in a clean venv away from this checkout, works (issue 12, item 8):
`demo --help`, `init`, `check` against the simulator, and `canvas-tui demo` reaching its first
frame (the demo data ships inside the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.workload import write_csv
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(
    *argv: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`bin/` of a fresh venv holding only the wheel and its dependencies (from the configured
    package index: PyPI, or the local mirror when offline)."""
    work = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT, cwd=work
    )
    (wheel,) = (work / "dist").glob("canvas_tui-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    _run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=work)
    yield work / "venv" / "bin"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVAS_", "VIRTUAL_ENV"))}
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_STATE_HOME=str(home / "state"))
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def test_the_wheel_carries_the_demo_data_and_the_documented_config(
    installed: Path, tmp_path: Path
) -> None:
    code = "import canvas_tui, pathlib; print(pathlib.Path(canvas_tui.__file__).parent)"
    package = Path(_run(installed / "python", "-c", code, cwd=tmp_path).strip())
    assert ROOT not in package.parents  # the installed copy, not this checkout
    assert (package / "data" / "demo-enrollments.csv").is_file()
    assert (package / "data" / "config.example.toml").is_file()
    assert (package / "schemas" / "report.schema.json").is_file()


def test_demo_help_init_and_check_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli = installed / "canvas-tui"
    assert "--time-scale" in _run(cli, "demo", "--help", cwd=tmp_path, env=env)
    assert "[keys]" in _run(cli, "init", "--example", cwd=tmp_path, env=env)

    world = World.generate(7)
    write_csv(tmp_path / "enrollments.csv", world, 5)
    (tmp_path / "token").write_text(ADMIN_TOKEN)
    (tmp_path / "token").chmod(0o600)
    with serve_in_thread(build_app(SimConfig(time_scale=20), world)) as base_url:
        out = _run(cli, "init", "--no-input", "--base-url", base_url, "--token-file", "token",
                   "--source", "enrollments.csv", cwd=tmp_path, env=env)  # fmt: skip
        assert "wrote canvas-tui.toml" in out
        assert "config.example.toml" not in (tmp_path / "canvas-tui.toml").read_text()
        out = _run(cli, "check", cwd=tmp_path, env=env)
    assert "result: OK" in out and "5 rows: 5 records, 0 invalid, 0 duplicates" in out


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a terminal")
def test_a_wheel_installed_demo_reaches_its_first_frame(installed: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    socket = f"canvas-tui-wheel-{os.getpid()}"  # a tmux server of our own, ended by its name
    tmux = ["tmux", "-L", socket]
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "120", "-y", "40", f"{installed / 'canvas-tui'} demo"],
        cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    try:
        screen = ""

        def first_frame() -> bool:
            nonlocal screen
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=False
            ).stdout
            assert "the demo data is missing" not in screen
            # the header names the packaged data; the footer's keys mean the console is drawn
            return "demo-enrollments.csv" in screen and "p Pause" in screen

        eventually(
            first_frame,
            what="the demo's first frame",
            timeout=120,
            interval=0.5,
            detail=lambda: screen,
        )
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
