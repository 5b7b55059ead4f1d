"""`canvas-tui` with no command is the console, with or without a source and options."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from canvas_tui.cli import COMMANDS, EXIT_CODES, build_parser, command_line, main
from canvas_tui.exit_codes import ExitCode


@pytest.mark.parametrize(
    ("argv", "command", "source"),
    [
        ([], "console", None),
        (["enrollments.csv"], "console", "enrollments.csv"),
        (["enrollments.csv", "--journal", "run.journal"], "console", "enrollments.csv"),
        (["--journal", "run.journal", "--read-only"], "console", None),
        (["console", "enrollments.csv"], "console", "enrollments.csv"),
        (["sync", "enrollments.csv"], "sync", "enrollments.csv"),
    ],
)
def test_no_command_means_the_console(argv: list[str], command: str, source: str | None) -> None:
    args = build_parser().parse_args(command_line(argv))
    assert args.command == command
    assert args.source == source


def test_version_and_help_stay_top_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert command_line(["--version"]) == ["--version"]
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(command_line(["--help"]))
    assert exited.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in _subparsers().items()
        for action in command._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


@pytest.mark.parametrize("command", sorted(EXIT_CODES))
def test_help_names_the_exit_codes_and_the_environment(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text
    for code, meaning in EXIT_CODES[command].items():
        assert f"  {code}  {meaning}" in text
    for name in (
        "CANVAS_API_TOKEN",
        "CANVAS_BASE_URL",
        "CANVAS_TUI_CONFIG",
        "CANVAS_TUI_PROGRESS_INTERVAL",
    ):
        assert name in text


def test_every_command_documents_its_exit_codes() -> None:
    assert set(EXIT_CODES) == set(COMMANDS)
    for command, codes in EXIT_CODES.items():
        assert set(codes) <= {int(c) for c in ExitCode}, command


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_knows_every_command_and_option(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "complete -o filenames -F _canvas_tui canvas-tui" in script
    for name, command in _subparsers().items():
        assert f"    {name}) opts=" in script
        assert all(o in script for a in command._actions for o in a.option_strings)
    if shutil.which("bash") and shell == "bash":
        done = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert done.returncode == 0, done.stderr


def test_a_bare_canvas_tui_without_config_points_to_demo_and_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CANVAS_API_TOKEN", raising=False)
    monkeypatch.delenv("CANVAS_BASE_URL", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("canvas-tui: error: no config found")
    assert "`canvas-tui demo`" in err and "`canvas-tui init`" in err


def test_init_example_prints_the_documented_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--example"]) == 0
    assert "[keys]" in capsys.readouterr().out
