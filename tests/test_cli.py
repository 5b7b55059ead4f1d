"""`canvas-tui` with no command is the console, with or without a source and options."""

from __future__ import annotations

import pytest

from canvas_tui.cli import build_parser, command_line


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
