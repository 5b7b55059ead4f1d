"""The wheel, installed in a clean venv away from this checkout, works (issue 12, item 8):
`demo --help`, `init`, `check` against the simulator, and `canvas-tui demo` reaching its first
frame (the demo data ships inside the package).

It is also the container image's build and run, without a container (issue 16; CI has no
container engine): the Dockerfile builds this wheel and installs it into a clean venv, and
deploy/'s CronJob and Deployment run `canvas-tui` with their arguments, the config and token
from a Secret and the state on a volume. Here those run from the installed wheel against the
simulator, with the image's paths moved under a temporary directory, and nothing may be
written outside the volume and the temporary directory (a read-only root filesystem)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canvas_tui import __version__
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.testing import free_port, serve_in_thread
from tests.engine.workload import fresh_pairs, write_csv
from tests.helpers import eventually, exited

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


def _image_extras() -> str:
    """The extras the Dockerfile installs the wheel with (its `ARG EXTRAS=` default)."""
    import dockerfile

    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd.upper() == "ARG" and command.value[0].startswith("EXTRAS="):
            return str(command.value[0].partition("=")[2])
    raise AssertionError("the Dockerfile names no EXTRAS")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`bin/` of a fresh venv holding only the wheel and its dependencies (from the configured
    package index: PyPI, or the local mirror when offline), as the Dockerfile installs it:
    `pip wheel --no-deps`, a venv, the wheel with the image's extras."""
    work = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT, cwd=work
    )
    (wheel,) = (work / "dist").glob("canvas_tui-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    _run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q",
         f"{wheel}[{_image_extras()}]", cwd=work)  # fmt: skip
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


# ---- the image's steps, without a container ---------------------------------------------------

STATE = "/var/lib/canvas-tui"  # the image's volume (Dockerfile, deploy/)
CONFIG_DIR = "/etc/canvas-tui"  # the Secret's mount: canvas-tui.toml and token
RECORDS = 12


def _container(kind: str) -> dict[str, Any]:
    """deploy/'s pod spec of `kind` (CronJob or Deployment)."""
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc["kind"] == kind:
                template = doc["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else doc["spec"]
                return dict(template["template"]["spec"])
    raise AssertionError(f"no {kind} in deploy/")


class Pod:
    """The image's file system for one run: the volume, the Secret's files, /tmp, and a home
    and working directory that must stay empty (read-only in the image)."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.state = root / "state-volume"
        self.secret = root / "secret"
        for d in (self.state, self.secret, root / "tmp", root / "home", root / "work"):
            d.mkdir(mode=0o700)
        self.sis = root / "sis.sqlite"  # the registrar's view that deploy's query reads
        pairs = fresh_pairs(World.generate(7), RECORDS)
        db = sqlite3.connect(self.sis)
        with db:
            db.execute(
                "CREATE TABLE canvas_enrollments "
                "(course_id TEXT, section_id TEXT, user_id TEXT, role TEXT, status TEXT)"
            )
            db.executemany(
                "INSERT INTO canvas_enrollments VALUES (?, ?, ?, 'student', 'active')",
                [(course, section, user) for user, course, section in pairs],
            )
        db.close()
        config = (ROOT / "deploy" / "canvas-tui.toml").read_text(encoding="utf-8")
        lines = [
            f'url = "sqlite:///{self.sis}"' if line.startswith("url = ") else line
            for line in config.splitlines()
        ]
        (self.secret / "canvas-tui.toml").write_text(self.paths("\n".join(lines)))
        (self.secret / "token").write_text(ADMIN_TOKEN)
        (self.secret / "token").chmod(0o400)
        self.env = {  # the image's ENV, moved; the simulator in place of Canvas
            **_env(root / "home"),
            "HOME": str(root / "home"),
            "XDG_STATE_HOME": self.paths(f"{STATE}/state"),
            "CANVAS_TUI_CONFIG": str(self.secret / "canvas-tui.toml"),
            "CANVAS_BASE_URL": base_url,
            "TMPDIR": str(root / "tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def paths(self, text: str) -> str:
        return text.replace(STATE, str(self.state)).replace(CONFIG_DIR, str(self.secret))

    def args(self, container: dict[str, Any]) -> list[str]:
        return [self.paths(a) for a in container["args"]]

    def written_outside_the_volume(self) -> list[str]:
        return [str(p) for d in ("home", "work") for p in (self.root / d).rglob("*")]


def test_the_version_and_syncs_options_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli = installed / "canvas-tui"
    assert _run(cli, "--version", cwd=tmp_path, env=env).strip() == f"canvas-tui {__version__}"
    assert "--no-attach" in _run(cli, "sync", "--help", cwd=tmp_path, env=env)


def test_watch_help_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli = installed / "canvas-tui"
    assert "--health" in _run(cli, "watch", "--help", cwd=tmp_path, env=env)


def test_the_cronjobs_sync_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    spec = _container("CronJob")
    (sync,) = spec["containers"]
    (prune,) = spec["initContainers"]
    with serve_in_thread(build_app(SimConfig(time_scale=20), World.generate(7))) as base_url:
        pod = Pod(tmp_path, base_url)
        runs = pod.state / "runs"
        runs.mkdir()
        old = runs / "20250101T023000Z.journal"  # a run from last term
        old.write_bytes(b"")
        os.utime(old, (time.time() - 40 * 86400,) * 2)
        _run(*[pod.paths(a) for a in prune["command"]], cwd=tmp_path / "work", env=pod.env)
        assert not old.exists()

        out = _run(installed / "canvas-tui", *pod.args(sync), cwd=tmp_path / "work", env=pod.env)
    summary = [json.loads(line) for line in out.splitlines()][-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    assert summary["counts"]["done"] == RECORDS
    (journal,) = runs.glob("*.journal")
    assert journal.stat().st_mode & 0o777 == 0o600
    assert (pod.state / "reports" / "last-run.json").is_file()
    assert pod.written_outside_the_volume() == []
    assert not journal.with_name(journal.name + ".sock").exists()  # the attach socket is gone


def test_the_deployments_watch_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    (watch,) = _container("Deployment")["containers"]
    with serve_in_thread(build_app(SimConfig(time_scale=20), World.generate(7))) as base_url:
        pod = Pod(tmp_path, base_url)
        args = pod.args(watch)
        args[args.index("--health") + 1] = str(free_port())  # the pod's own port may be taken
        journal = Path(args[args.index("--journal") + 1])
        proc = subprocess.Popen(
            [installed / "canvas-tui", *args],
            cwd=tmp_path / "work",
            env=pod.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def done() -> int:
                if not journal.exists():
                    return 0
                db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
                try:
                    (n,) = db.execute(
                        "SELECT COUNT(*) FROM records WHERE state = 'done'"
                    ).fetchone()
                except sqlite3.OperationalError:  # not created yet
                    return 0
                finally:
                    db.close()
                return int(n) >= RECORDS

            eventually(done, what="the watch sent every row", timeout=120, abort_if=exited(proc))
            proc.send_signal(signal.SIGTERM)  # what Kubernetes sends first
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "stopping" in events
    assert pod.written_outside_the_volume() == []
