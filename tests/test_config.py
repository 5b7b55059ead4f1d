"""Config: TOML into typed objects, env overrides, token handling, URL safety, `init`."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from canvas_tui.config import (
    Config,
    ConfigError,
    Secret,
    check_base_url,
    init_main,
    load_config,
)
from canvas_tui.sources import IdKind

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "canvas-tui.toml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_the_example_documents_every_key_and_loads(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.example.toml", env={})
    assert config.canvas.base_url == "https://canvas.example.edu"
    assert config.canvas.timeout == 30.0
    assert config.source.kind == "csv" and config.source.format == "canvas"
    assert config.source.path == ROOT / "enrollments.csv"  # relative to the file
    assert config.source.values == {}  # commented-out examples map nothing
    assert config.sync.enrollment_state == "active" and config.sync.notify is False
    assert config.sync.journal_dir is None  # the true default: the user state directory
    assert config.plan.drop_policy == "never" and config.plan.brake_max_share == 0.2
    assert config.watch.drift_time() == (3, 0) and config.watch.cursor_column is None
    assert config.watch.csv_mode is None  # by source: a file a snapshot, a folder deltas
    text = (ROOT / "config.example.toml").read_text()
    for key in (
        "base_url", "token_file", "token_command", "token", "timeout", "kind", "path",
        "token_file_group_readable",
        "encoding", "delimiter", "format", "ids", "url", "query", "[source.params]",
        "[source.mapping]", "[source.defaults]", "[source.values.role]", "max_concurrency",
        "notify", "enrollment_state", "journal", "journal_dir", "report", "drop_policy",
        "manual_enrollments", "brake_max_share", "brake_max_count", "[watch]", "interval",
        "cursor_column", "cursor_overlap", "row_id_column", "full_every", "csv_mode",
        "drift_at", "drift_every", "keep_days",
    ):  # fmt: skip
        assert key in text, key


def test_no_file_gives_defaults_plus_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(
        None, env={"CANVAS_BASE_URL": "https://x.test/", "CANVAS_API_TOKEN": "t0k"}
    )
    assert config == Config(
        canvas=config.canvas, path=None, warnings=()
    )  # everything else is the default
    assert config.canvas.base_url == "https://x.test"
    assert config.canvas.token is not None and config.canvas.token.reveal() == "t0k"
    assert config.canvas.token_origin == "CANVAS_API_TOKEN"


def test_default_path_is_used_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[sync]\nmax_concurrency = 4\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={}).sync.max_concurrency == 4


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[canvas]\nbase_url = "https://x.test"\ntimeout = = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 3" in message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[plan]\ndrop_polcy = 'delete'\n", "plan.drop_polcy: unknown key in [plan]; did you mean 'drop_policy'?"),
        ("[snyc]\n", "snyc: unknown key in the top level; did you mean 'sync'?"),
        ("[plan]\ndrop_policy = 'remove'\n", "plan.drop_policy: expected one of never, inactivate, conclude, delete, got 'remove'"),
        ("[sync]\nmax_concurrency = 'ten'\n", "sync.max_concurrency: expected an integer >= 1, got 'ten'"),
        ("[sync]\nmax_concurrency = 0\n", "sync.max_concurrency: expected an integer >= 1, got 0"),
        ("[sync]\nnotify = 'yes'\n", "sync.notify: expected true or false, got 'yes'"),
        ("[canvas]\ntimeout = true\n", "canvas.timeout: expected a number, got True"),
        ("[plan]\nbrake_max_share = 1.5\n", "plan.brake_max_share: expected a number between 0.0 and 1.0, got 1.5"),
        ("[source]\nencoding = 'klingon'\n", "source.encoding: expected a Python codec name"),
        ("[source]\ndelimiter = ';;'\n", "source.delimiter: expected one character"),
        ("[source]\nformat = 'mapped'\n", "source.mapping: expected a [source.mapping] table"),
        ("[source.mapping]\nuser = 'ID'\n", "source.mapping.user: unknown field (did you mean 'user_id'?)"),
        ("[source]\nkind = 'sql'\n", "source.url: expected a SQLAlchemy database URL"),
        ("[source]\nurl = 'sqlite://'\nquery = 'SELECT 1'\npath = 'a.csv'\n", "source.path: expected no path when kind = \"sql\""),
        ("[source]\npath = 'a.csv'\nquery = 'SELECT 1'\n", "source.kind: expected \"sql\" when url or query is set"),
        ("[source]\nids = 'numeric'\n", "source.ids: expected one of sis, canvas"),
        ("[source]\nids = { person = 'sis' }\n", "source.ids.person: unknown key"),
        ("[canvas]\nbase_url = 'http://canvas.example.edu'\n", "canvas.base_url: 'http://canvas.example.edu': plain http would send the token"),
        ("[canvas]\ntoken = 'a'\ntoken_command = 'b'\n", "[canvas]: set only one of token, token_command"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_key_and_what_was_expected(
    tmp_path: Path, toml: str, expected: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert expected in str(caught.value)


def test_mapped_source_sql_and_params(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[source]
url = "postgresql+psycopg://registrar:pw@db/banner"
query = "SELECT * FROM v WHERE term = :term"
format = "mapped"
ids = { user = "canvas" }
[source.params]
term = "202610"
[source.mapping]
course_id = "CRN"
user_id = "PIDM"
role = "ROLE"
[source.defaults]
status = "active"
[source.values.role]
S = "student"
""",
    )
    source = load_config(path, env={}).source
    assert source.kind == "sql"
    assert source.params == {"term": "202610"}
    assert source.mapping == {"course_id": "CRN", "user_id": "PIDM", "role": "ROLE"}
    assert source.values == {"role": {"S": "student"}}
    assert source.ids == {"user": IdKind.CANVAS, "course": IdKind.SIS, "section": IdKind.SIS}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    token_file = write(tmp_path, "from-file\n", "token")
    path = write(tmp_path, f'[canvas]\nbase_url = "https://a.test"\ntoken_file = "{token_file}"\n')
    config = load_config(
        path, env={"CANVAS_BASE_URL": "http://127.0.0.1:8900", "CANVAS_API_TOKEN": "from-env"}
    )
    assert config.canvas.base_url == "http://127.0.0.1:8900"
    assert config.canvas.token == Secret("from-env")
    with pytest.raises(ConfigError, match=r"CANVAS_BASE_URL: 'http://evil\.test': plain http"):
        load_config(path, env={"CANVAS_BASE_URL": "http://evil.test"})


def test_token_file_relative_to_the_config_and_private(tmp_path: Path) -> None:
    write(tmp_path, "  s3cret-token \n", "token")
    path = write(tmp_path, '[canvas]\ntoken_file = "token"\n')
    config = load_config(path, env={})
    assert config.canvas.token is not None and config.canvas.token.reveal() == "s3cret-token"
    assert config.warnings == ()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_token_file_readable_by_others_warns(tmp_path: Path) -> None:
    token = write(tmp_path, "s3cret-token", "token", mode=0o644)
    path = write(tmp_path, f'[canvas]\ntoken_file = "{token}"\n')
    (warning,) = load_config(path, env={}).warnings
    assert f"{token} (the token file) is readable by other users (mode 644)" in warning
    assert f"chmod 600 {token}" in warning
    assert "s3cret" not in warning


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_token_file_its_own_group_reads_is_accepted_only_when_asked(tmp_path: Path) -> None:
    """Kubernetes mounts a Secret 0440 under fsGroup: `token_file_group_readable` accepts that
    when the group is this process's; read by others, or by a group not ours, still warns."""
    token = write(tmp_path, "s3cret-token", "token", mode=0o440)
    os.chown(token, -1, os.getegid())
    plain = write(tmp_path, f'[canvas]\ntoken_file = "{token}"\n')
    (warning,) = load_config(plain, env={}).warnings
    assert "readable by other users of its group (mode 440)" in warning
    assert "token_file_group_readable = true" in warning and "s3cret" not in warning
    asked = write(tmp_path, f'[canvas]\ntoken_file = "{token}"\ntoken_file_group_readable = true\n')
    config = load_config(asked, env={})
    assert config.warnings == () and config.canvas.token_file_group_readable is True
    token.chmod(0o444)  # everyone: the key does not cover it
    (warning,) = load_config(asked, env={}).warnings
    assert "is readable by other users (mode 444)" in warning
    if os.geteuid() == 0:  # only root gives a file to a group it is not in
        token.chmod(0o440)
        os.chown(token, -1, max({os.getegid(), *os.getgroups()}) + 1)
        (warning,) = load_config(asked, env={}).warnings
        assert "accepts only a group this process is in" in warning


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_plain_token_in_the_config_warns_twice_when_the_file_is_readable(tmp_path: Path) -> None:
    path = write(tmp_path, '[canvas]\ntoken = "s3cret-token"\n', mode=0o644)
    config = load_config(path, env={})
    assert config.canvas.token == Secret("s3cret-token")
    plain, exposed = config.warnings
    assert "holds the API token in plain text" in plain
    assert "readable by other users" in exposed
    assert all("s3cret" not in w for w in config.warnings)


def test_missing_token_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = write(tmp_path, '[canvas]\ntoken_file = "absent"\n')
    config = load_config(path, env={})
    assert config.canvas.token is None
    assert config.canvas.token_error is not None
    assert (
        "canvas.token_file: expected a readable file holding the token" in config.canvas.token_error
    )
    assert config.warnings == (config.canvas.token_error,)


def test_token_command(tmp_path: Path) -> None:
    ok = f"{sys.executable} -c \"print('  from-cmd  ')\""
    path = write(tmp_path, f"[canvas]\ntoken_command = '''{ok}'''\n")
    assert load_config(path, env={}).canvas.token == Secret("from-cmd")
    failing = f"{sys.executable} -c \"import sys; sys.exit('vault locked')\""
    path = write(tmp_path, f"[canvas]\ntoken_command = '''{failing}'''\n")
    config = load_config(path, env={})
    assert config.canvas.token is None
    assert "token_command: expected a command that prints the token; it exited 1: vault locked" in (
        config.canvas.token_error or ""
    )


def test_secret_never_shows_itself() -> None:
    secret = Secret("s3cret-token")
    config = Config()
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)
    assert "s3cret" not in f"{secret} {secret!r}"
    assert secret.reveal() == "s3cret-token"
    from dataclasses import replace

    with_token = replace(config, canvas=replace(config.canvas, token=secret))
    assert "s3cret" not in repr(with_token)


@pytest.mark.parametrize(
    "url",
    [
        "https://canvas.example.edu",
        "http://127.0.0.1:8900",
        "http://127.8.9.10",
        "http://[::1]:8000",
        "http://localhost:8900",
    ],
)
def test_check_base_url_accepts(url: str) -> None:
    check_base_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "no Canvas base URL"),
        ("http://canvas.example.edu", "plain http would send the token unencrypted"),
        ("http://10.0.0.1", "plain http"),
        ("http://localhost.evil.test", "plain http"),
        ("ftp://canvas.example.edu", "the scheme must be https"),
        ("canvas.example.edu", "the scheme must be https"),
        ("https://user:pw@canvas.example.edu", "must not carry a user name or password"),
        ("https://canvas.example.edu/?x=1", "must not carry a query"),
        ("https://canvas.example.edu:notaport", "not a URL"),
    ],
)
def test_check_base_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        check_base_url(url)


# -- init ------------------------------------------------------------------------------------


def init_args(path: Path, **flags: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "path": str(path), "base_url": None, "token_file": None, "source": None,
        "force": False, "no_input": True,
    }  # fmt: skip
    values.update(flags)
    return argparse.Namespace(**values)


def test_init_from_flags_writes_a_config_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "canvas-tui.toml"
    code = init_main(
        init_args(
            target, base_url="https://canvas.uni.test/", token_file="tok", source="roster.csv"
        )
    )
    assert code == 0
    config = load_config(target, env={})
    assert config.canvas.base_url == "https://canvas.uni.test"
    assert config.canvas.token_file == tmp_path / "tok"
    assert config.source.path == tmp_path / "roster.csv"
    out = capsys.readouterr().out
    assert "chmod 600" in out and "canvas-tui check" in out
    assert "token =" not in target.read_text()


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = write(tmp_path, "# mine\n")
    assert init_main(init_args(target)) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"
    assert init_main(init_args(target, force=True)) == 0
    assert "[canvas]" in target.read_text()


def test_init_asks_on_a_terminal(tmp_path: Path) -> None:
    answers = iter(["https://lms.uni.test", "", "feed.csv"])
    questions: list[str] = []

    def ask(question: str) -> str:
        questions.append(question)
        return next(answers)

    target = tmp_path / "c.toml"
    assert init_main(init_args(target, no_input=False), ask=ask) == 0
    assert [q.split(" [")[0] for q in questions] == [
        "Canvas base URL", "File holding the API token", "Source enrollments.csv",
    ]  # fmt: skip
    config = load_config(target, env={})
    assert config.canvas.base_url == "https://lms.uni.test"
    assert config.canvas.token_file == Path("~/.config/canvas-tui/token").expanduser()
    assert config.source.path == tmp_path / "feed.csv"


def test_init_refuses_plain_http_to_a_remote_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "c.toml"
    assert init_main(init_args(target, base_url="http://canvas.uni.test")) == 2
    assert "plain http" in capsys.readouterr().err
    assert not target.exists()


def test_a_token_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "[canvas]\ntoken = 987654321987\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "canvas.token: expected a string" in str(caught.value)
    assert "987654321987" not in str(caught.value)


def test_init_refuses_a_pasted_token_as_the_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "c.toml"
    token = "1234~" + "a" * 64
    assert init_main(init_args(target, token_file=token)) == 2
    err = capsys.readouterr().err
    assert "looks like an API token" in err and token not in err
    assert not target.exists()


def test_the_example_documents_every_console_key_with_its_default() -> None:
    from canvas_tui.tui.actions import BY_ID

    text = (ROOT / "config.example.toml").read_text()
    keys = text[text.index("\n[keys]") :]
    for action in BY_ID.values():
        assert f'# {action.id} = "{action.key}"' in keys, action.id
    uncommented = tomllib.loads(text)
    assert uncommented.get("keys", {}) == {}  # documented, not overridden


def test_config_search_order_env_then_cwd_then_user_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "canvas-tui" / "canvas-tui.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[sync]\nmax_concurrency = 3\n")
    assert load_config(None, env={}).path == user
    write(tmp_path, "[sync]\nmax_concurrency = 4\n")
    assert load_config(None, env={}).sync.max_concurrency == 4  # ./canvas-tui.toml first
    named = write(tmp_path, "[sync]\nmax_concurrency = 5\n", name="elsewhere.toml")
    env = {"CANVAS_TUI_CONFIG": str(named)}
    assert load_config(None, env=env).sync.max_concurrency == 5  # the variable wins
    with pytest.raises(ConfigError, match=r"gone\.toml: config file not found .*CANVAS_TUI_CONFIG"):
        load_config(None, env={"CANVAS_TUI_CONFIG": str(tmp_path / "gone.toml")})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "cursor_column = 'updated_at; DROP TABLE x'",
            "watch.cursor_column: expected a column name",
        ),
        ("drift_at = '25:00'", 'watch.drift_at: expected a UTC time "HH:MM"'),
        ("csv_mode = 'snapshots'", "did you mean 'snapshot'"),
        ("interval = 0", "watch.interval: expected a number between"),
    ],
)
def test_watch_settings_are_checked(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[watch]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, env={})


def test_watch_settings_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[watch]\ncursor_column = 'updated_at'\nrow_id_column = 'id'\ndrift_at = ''\n"
        "drift_every = 900\ncsv_mode = 'delta'\n"
    )
    watch = load_config(path, env={}).watch
    assert (watch.cursor_column, watch.row_id_column, watch.csv_mode) == (
        "updated_at",
        "id",
        "delta",
    )
    assert watch.drift_time() is None and watch.drift_every == 900
