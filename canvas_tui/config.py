"""Typed configuration from TOML (tomllib) and the environment; `canvas-tui init` writes one.

Every key is documented in config.example.toml. Errors name the file, the dotted key and what was
expected; unknown keys are errors (with a did-you-mean), because a mistyped safety setting such as
`drop_polcy` must not silently fall back to its default.
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import math
import os
import re
import shlex
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar, cast

from canvas_tui.canvas.urls import base_url_problem, proxy_problem, redact_url
from canvas_tui.sources.normalize import FIELDS, ID_FIELDS, Format, IdKind

ENV_TOKEN: Final = "CANVAS_API_TOKEN"  # noqa: S105 -- the variable name, not a token
ENV_BASE_URL: Final = "CANVAS_BASE_URL"
TOKEN_COMMAND_TIMEOUT: Final = 30.0

DropPolicy = Literal["never", "inactivate", "conclude", "delete"]
ManualEnrollments = Literal["leave", "include"]
EnrollmentState = Literal["active", "invited", "inactive"]
SourceKind = Literal["csv", "sql", "kafka"]
Via = Literal["rest", "sis-import", "auto"]
VIA_CHOICES: tuple[str, ...] = ("rest", "sis-import", "auto")


def import_needs_plan(via: str) -> bool:
    """The rule `sync` and the console share (engine/plan/executor.py `plan_session`, tui/launch.py
    `console_plan`): a SIS import carries a plan's changes, so `--via sis-import` (or a configured
    `[sync] via = "sis-import"`) means plan mode."""
    return via == "sis-import"


T = TypeVar("T")


class ConfigError(Exception):
    """The configuration is unusable; the message names the file, the key and what is expected."""


class Secret:
    """A value that must never be printed, logged or stored: repr/str show only a mask."""

    __slots__ = ("_value",)
    _known: ClassVar[set[str]] = set()  # every value held, so log filters can mask it

    def __init__(self, value: str) -> None:
        self._value = value
        Secret._known.add(value)

    @classmethod
    def known_values(cls) -> frozenset[str]:
        return frozenset(cls._known)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class CanvasConfig:
    base_url: str = ""  # "" until configured; check_base_url() says so
    token: Secret | None = None
    token_origin: str | None = None  # where the token came from, for `check` (never the token)
    token_error: str | None = None  # why token_file / token_command gave no token
    token_file: Path | None = None
    token_command: str | None = None
    timeout: float = 30.0
    proxy: str | None = None  # explicit only (never HTTP_PROXY); https base URLs only
    # a token file its own group may read is fine when that group is this process's
    # (Kubernetes' fsGroup mounts a Secret 0440); other users reading it always warns
    token_file_group_readable: bool = False


@dataclass(frozen=True, slots=True)
class SourceConfig:
    kind: SourceKind = "csv"
    path: Path | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    format: Format = "canvas"
    mapping: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ids: Mapping[str, IdKind] = field(default_factory=dict)
    url: str | None = None
    query: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
    # kind = "kafka" (`canvas-tui watch` only): bootstrap brokers, the topic, the consumer group
    brokers: tuple[str, ...] = ()
    topic: str | None = None
    group: str = "canvas-tui"


@dataclass(frozen=True, slots=True)
class SyncConfig:
    max_concurrency: int | None = None  # None: as many as Canvas's throttle allows
    notify: bool = False
    enrollment_state: EnrollmentState = "active"
    journal: Path | None = None  # a fixed journal file (resumed when it exists)
    journal_dir: Path | None = None  # where per-run journals go when `journal` is not set
    report: Path | None = None
    # how the changes go to Canvas: "rest", "sis-import" (a SIS import of the plan's changes),
    # or "auto" (whichever the model expects to be faster; needs plan mode for an import)
    via: Via = "rest"


@dataclass(frozen=True, slots=True)
class PlanConfig:
    drop_policy: DropPolicy = "never"
    manual_enrollments: ManualEnrollments = "leave"
    brake_max_share: float = 0.2
    brake_max_count: int | None = 100


CsvMode = Literal["snapshot", "delta"]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """`canvas-tui watch`: how the source is polled, when drift is checked, what is kept."""

    interval: float = 2.0  # seconds between two polls of the source
    # SQL: the column that grows with every change (an updated_at or a sequence); each poll
    # reads only rows at or past the last value seen, less `cursor_overlap`
    cursor_column: str | None = None
    # re-read this much behind the cursor (seconds for a timestamp, units for a number): a
    # transaction that commits late with an earlier value is still seen; unchanged rows cost
    # nothing (the snapshot diff drops them)
    cursor_overlap: float = 5.0
    # SQL: the source row's own key; an updated row whose enrollment changed (a section
    # move) then drops the enrollment it named before
    row_id_column: str | None = None
    # SQL with a cursor: read the whole query this often (seconds; 0 never) to see rows
    # deleted outright, which no cursor shows
    full_every: float = 3600.0
    # each CSV: "snapshot" (the whole roster: a row gone is a drop) or "delta" (changes
    # only); None: a file is a snapshot, a drop folder's files are deltas (a partial file
    # dropped in must not end every enrollment it leaves out)
    csv_mode: CsvMode | None = None
    drift_at: str | None = "03:00"  # daily drift check at this UTC time ("HH:MM"); "" off
    drift_every: float = 0.0  # or every N seconds (0: only `drift_at`)
    keep_days: float = 14.0  # finished records older than this are compacted away
    journal: Path | None = None  # the service's journal (default: journal_dir/watch.journal)

    def drift_time(self) -> tuple[int, int] | None:
        if not self.drift_at:
            return None
        match = _CLOCK.fullmatch(self.drift_at)
        assert match is not None, "checked when read"
        return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class SisImportConfig:
    """[sis_import]: the SIS import channel (engine/sis_import/)."""

    account: str = "self"  # the root account the imports go to ("self": the token's domain)
    rows_per_second: float = 100.0  # Canvas's import rate assumed by `--via auto`
    start_seconds: float = 30.0  # upload, queue and the last poll, assumed by `--via auto`
    poll_min: float = 1.0  # seconds between status polls, backing off to poll_max
    poll_max: float = 30.0
    # after an upload whose answer was lost: how long to wait for Canvas to start an import it
    # lists without its file (it names the file only once its job starts)
    find_wait: float = 600.0


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    autostart: bool = False  # start sending as the console opens a source (no READY state)


@dataclass(frozen=True, slots=True)
class Config:
    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    path: Path | None = None  # the file it was read from
    warnings: tuple[str, ...] = ()  # show these to the operator (token exposure and the like)
    # [keys]: console action id -> key(s), e.g. pause = "space"; the console checks the ids
    keys: Mapping[str, str] = field(default_factory=dict)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    sis_import: SisImportConfig = field(default_factory=SisImportConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)


# -- reading ---------------------------------------------------------------------------------


class _Table:
    """One TOML table being read: typed getters that record which keys were used."""

    def __init__(self, file: str, prefix: str, data: Mapping[str, Any], base: Path) -> None:
        self.file = file
        self.prefix = prefix
        self.data = data
        self.base = base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, expected: str, value: object = None) -> ConfigError:
        got = "" if value is None else f", got {value!r}"
        return ConfigError(f"{self.file}: {self.key(name)}: expected {expected}{got}")

    def get(
        self,
        name: str,
        kind: type[T] | tuple[type, ...],
        expected: str,
        *,
        secret: bool = False,
    ) -> T | None:
        self.used.add(name)
        if name not in self.data:
            return None
        value = self.data[name]
        # bool is an int in Python; a TOML `true` is never a number here.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            shown = f"a {type(value).__name__} (value not shown)" if secret else value
            raise self.error(name, expected, shown)
        return cast(T, value)

    def text(self, name: str, default: str | None = None, *, empty: bool = False) -> str | None:
        value = self.get(name, str, "a string")
        if value is None:
            return default
        if not empty and not value.strip():
            raise self.error(name, "a non-empty string", value)
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, f"one of {', '.join(choices)}")
        if value is None:
            return default
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(name, f"one of {', '.join(choices)}{hint}", value)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, bool, "true or false")
        return default if value is None else value

    def integer(self, name: str, default: int | None, *, minimum: int) -> int | None:
        value = self.get(name, int, f"an integer >= {minimum}")
        if value is None:
            return default
        if value < minimum:
            raise self.error(name, f"an integer >= {minimum}", value)
        return value

    def number(self, name: str, default: float, *, low: float, high: float | None) -> float:
        value = self.get(name, (int, float), "a number")
        if value is None:
            return default
        # nan passes every comparison and inf is no timeout: both are refused
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"> {low}"
            raise self.error(name, f"a number {span}", value)
        return float(value)

    def path(self, name: str) -> Path | None:
        value = self.text(name)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def table(self, name: str) -> _Table:
        value = self.get(name, dict, "a table")
        return _Table(self.file, self.key(name), value or {}, self.base)

    def string_map(self, name: str) -> dict[str, str]:
        sub = self.table(name)
        out: dict[str, str] = {}
        for key, value in sub.data.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise sub.error(key, "a string", value)
            out[key] = str(value)
        return out

    def finish(self, nested: tuple[str, ...] = ()) -> None:
        """Unknown keys are errors: a typo in a safety setting must not pass silently."""
        known = self.used | set(nested)
        for name in self.data:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"[{self.prefix}]" if self.prefix else "the top level"
                raise ConfigError(
                    f"{self.file}: {self.key(name)}: unknown key in {where}{hint} "
                    f"(known: {', '.join(sorted(known))})"
                )


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (default: the first of `paths.config_search_path` that exists; none is fine)
    and apply the environment."""
    env = os.environ if env is None else env
    if path is None:
        file = find_config(env)
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: config file not found")
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
    return _parse(data, file, env)


def find_config(env: Mapping[str, str]) -> Path | None:
    """$CANVAS_TUI_CONFIG (which must exist), ./canvas-tui.toml, the user config directory."""
    from canvas_tui.paths import ENV_CONFIG, config_search_path

    for origin, candidate in config_search_path(env):
        if candidate.is_file():
            return candidate
        if origin == f"${ENV_CONFIG}":
            raise ConfigError(f"{candidate}: config file not found (named by ${ENV_CONFIG})")
    return None


def _parse(data: Mapping[str, Any], file: Path | None, env: Mapping[str, str]) -> Config:
    name = str(file) if file is not None else "(defaults)"
    base = file.resolve().parent if file is not None else Path.cwd()
    root = _Table(name, "", data, base)
    warnings: list[str] = []
    canvas = _canvas(root.table("canvas"), file, env, warnings)
    source = _source(root.table("source"))
    sync = _sync(root.table("sync"))
    plan = _plan(root.table("plan"))
    keys = root.string_map("keys")
    console = root.table("console")
    console_config = ConsoleConfig(autostart=console.boolean("autostart", False))
    console.finish()
    sis_import = _sis_import(root.table("sis_import"))
    watch = _watch(root.table("watch"))
    root.finish()
    return Config(
        canvas, source, sync, plan, file, tuple(warnings), keys, console_config, sis_import, watch
    )


def _canvas(
    t: _Table, file: Path | None, env: Mapping[str, str], warnings: list[str]
) -> CanvasConfig:
    base_url = t.text("base_url", "") or ""
    where = t.key("base_url")
    if env.get(ENV_BASE_URL):
        base_url, where = env[ENV_BASE_URL], ENV_BASE_URL
    base_url = base_url.strip().rstrip("/")
    if base_url:
        try:
            check_base_url(base_url)
        except ConfigError as exc:
            raise ConfigError(f"{t.file}: {where}: {exc}") from None
    plain = t.get("token", str, "a string (better: use token_file or token_command)", secret=True)
    token_file = t.path("token_file")
    token_command = t.text("token_command")
    timeout = t.number("timeout", 30.0, low=0.001, high=None)
    proxy = t.text("proxy")
    group_readable = t.boolean("token_file_group_readable", False)
    t.finish()
    if proxy is not None and base_url:
        problem = proxy_problem(base_url, proxy)
        if problem:
            raise ConfigError(f"{t.file}: {t.key('proxy')}: {problem}")

    given = [k for k, v in (("token", plain), ("token_file", token_file)) if v is not None]
    if token_command is not None:
        given.append("token_command")
    if len(given) > 1:
        raise ConfigError(f"{t.file}: [canvas]: set only one of {', '.join(given)}")
    if plain is not None:
        warnings.append(
            f"{t.file}: [canvas] token holds the API token in plain text; move it to a file "
            "named by token_file (chmod 600), or use token_command or CANVAS_API_TOKEN"
        )
        if file is not None:
            _warn_if_exposed(file, "the config file, which holds the token", warnings)

    token: Secret | None = None
    origin: str | None = None
    token_error: str | None = None
    if env.get(ENV_TOKEN):
        token, origin = Secret(env[ENV_TOKEN].strip()), ENV_TOKEN
    elif plain is not None:
        token, origin = Secret(plain.strip()), f"{t.key('token')} in {t.file}"
    else:
        # A token that cannot be had is reported, not raised: commands that need no token
        # (validating the source, opening a journal read-only) still work.
        try:
            if token_file is not None:
                token = _read_token_file(token_file, t, warnings, group_readable)
                origin = f"token_file {token_file}"
            elif token_command is not None:
                token, origin = _run_token_command(token_command, t), "token_command"
        except ConfigError as exc:
            token_error = str(exc)
            warnings.append(token_error)
    return CanvasConfig(
        base_url,
        token,
        origin,
        token_error,
        token_file,
        token_command,
        timeout,
        proxy,
        group_readable,
    )


def _read_token_file(path: Path, t: _Table, warnings: list[str], group_readable: bool) -> Secret:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise t.error("token_file", f"a readable file holding the token ({exc.strerror})") from None
    if not value:
        raise t.error("token_file", f"a file holding the token, but {path} is empty")
    _warn_if_exposed(path, "the token file", warnings, group_readable=group_readable)
    return Secret(value)


def _run_token_command(command: str, t: _Table) -> Secret:
    try:
        done = subprocess.run(  # noqa: S603 -- the operator's own command, no shell
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=TOKEN_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise t.error("token_command", f"a command that prints the token ({exc})") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or [""])[0]
        raise t.error(
            "token_command",
            f"a command that prints the token; it exited {done.returncode}: {first}",
        )
    value = done.stdout.strip()
    if not value:
        raise t.error("token_command", "a command that prints the token; it printed nothing")
    return Secret(value)


def _warn_if_exposed(
    path: Path, what: str, warnings: list[str], *, group_readable: bool | None = None
) -> None:
    """A warning when users other than this one may read `path`. `group_readable`
    ([canvas] token_file_group_readable; None: not a token file, the key does not apply)
    accepts read by the file's group only when this process is in that group: then it is the
    service's own (Kubernetes' fsGroup), not a shared one this user never chose."""
    if os.name != "posix":
        return
    try:
        st = path.stat()
    except OSError:
        return
    mode = st.st_mode
    if mode & stat.S_IROTH:
        warnings.append(
            f"{path} ({what}) is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    elif mode & stat.S_IRGRP:
        ours = st.st_gid == os.getegid() or st.st_gid in os.getgroups()
        if group_readable and ours:
            return
        if group_readable is None:
            advice = f"run: chmod 600 {path}"
        elif group_readable:
            advice = (
                f"token_file_group_readable accepts only a group this process is in, not "
                f"group {st.st_gid}; run: chmod 600 {path}"
            )
        else:
            advice = (
                f"run: chmod 600 {path}, or, where that group is this service's alone "
                "(Kubernetes fsGroup), set [canvas] token_file_group_readable = true"
            )
        warnings.append(
            f"{path} ({what}) is readable by other users of its group "
            f"(mode {stat.S_IMODE(mode):o}); {advice}"
        )


def _source(t: _Table) -> SourceConfig:
    url = t.text("url")
    path = t.path("path")
    kind = t.choice("kind", ("csv", "sql", "kafka"), "sql" if url is not None else "csv")
    fmt = t.choice("format", ("canvas", "mapped"), "canvas")
    encoding = t.text("encoding", "utf-8") or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise t.error("encoding", "a Python codec name such as utf-8 or cp1252", encoding) from None
    delimiter = t.text("delimiter", ",", empty=True) or ","
    if delimiter == "\\t":
        delimiter = "\t"
    if len(delimiter) != 1:
        raise t.error("delimiter", 'one character (use "\\t" for tab)', delimiter)

    mapping = t.string_map("mapping")
    _known_fields(t, "mapping", mapping)
    defaults = t.string_map("defaults")
    _known_fields(t, "defaults", defaults)
    values_table = t.table("values")
    values: dict[str, dict[str, str]] = {}
    for field_name in values_table.data:
        table = values_table.string_map(field_name)
        if table:  # an empty table (all examples commented out) maps nothing
            values[field_name] = table
    _known_fields(t, "values", values)
    ids = _ids(t)
    query = t.text("query")
    params_table = t.table("params")
    params: dict[str, object] = {}
    for key, value in params_table.data.items():
        if isinstance(value, dict | list):
            raise params_table.error(key, "a string, number, boolean or date", value)
        params[key] = value
    brokers, topic, group = _kafka(t, kind)
    t.finish()

    if fmt == "mapped" and not mapping:
        raise t.error("mapping", 'a [source.mapping] table when format = "mapped"')
    if fmt == "canvas" and mapping:
        raise t.error("format", '"mapped" when a [source.mapping] table is given', fmt)
    if kind == "sql":
        if url is None:
            raise t.error("url", 'a SQLAlchemy database URL when kind = "sql"')
        if query is None:
            raise t.error("query", 'a SQL query when kind = "sql"')
        if path is not None:
            raise t.error("path", 'no path when kind = "sql" (the query is the source)')
    elif url is not None or query is not None:
        raise t.error("kind", '"sql" when url or query is set', kind)
    if kind == "kafka" and path is not None:
        raise t.error("path", 'no path when kind = "kafka" (the topic is the source)')
    return SourceConfig(
        kind=cast(SourceKind, kind),
        path=path,
        encoding=encoding,
        delimiter=delimiter,
        format=cast(Format, fmt),
        mapping=mapping,
        defaults=defaults,
        values=values,
        ids=ids,
        url=url,
        query=query,
        params=params,
        brokers=brokers,
        topic=topic,
        group=group,
    )


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's own rule for a topic name
_BROKER = re.compile(r"[^\s:/,]+:[0-9]{1,5}")


def _kafka(t: _Table, kind: str) -> tuple[tuple[str, ...], str | None, str]:
    """`brokers`, `topic` and `group` of a topic source (kind = "kafka"); refused elsewhere."""
    raw = t.get("brokers", (str, list), 'a list of "host:port" (or one string, comma-separated)')
    topic = t.text("topic")
    group = t.text("group", "canvas-tui") or "canvas-tui"
    if kind != "kafka":
        for name in ("brokers", "topic", "group"):
            if name in t.data:
                raise t.error(name, 'no such key unless kind = "kafka"')
        return (), None, group
    items: list[object] = raw.split(",") if isinstance(raw, str) else list(raw or [])
    brokers = tuple(str(b).strip() for b in items if str(b).strip())
    if not brokers:
        raise t.error("brokers", 'the Kafka bootstrap servers, e.g. ["kafka-1:9092"]', raw)
    for broker in brokers:
        if not _BROKER.fullmatch(broker):
            raise t.error("brokers", '"host:port" entries', broker)
    if topic is None:
        raise t.error("topic", 'the topic to read when kind = "kafka"')
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise t.error("topic", "a Kafka topic name (letters, digits, '.', '_', '-')", topic)
    return brokers, topic, group


def _known_fields(t: _Table, name: str, table: Mapping[str, object]) -> None:
    for key in table:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{t.file}: {t.key(name)}.{key}: unknown field{hint}; expected one of "
                f"{', '.join(FIELDS)}"
            )


def _ids(t: _Table) -> dict[str, IdKind]:
    kinds = tuple(k.value for k in IdKind)
    raw = t.get("ids", (str, dict), f"{' or '.join(kinds)}, or a table of user/course/section")
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {obj: IdKind(t.choice("ids", kinds, "sis")) for obj in ID_FIELDS}
    sub = t.table("ids")
    out = {obj: IdKind(sub.choice(obj, kinds, "sis")) for obj in ID_FIELDS}
    sub.finish()
    return out


def _sync(t: _Table) -> SyncConfig:
    out = SyncConfig(
        max_concurrency=t.integer("max_concurrency", None, minimum=1),
        notify=t.boolean("notify", False),
        enrollment_state=cast(
            EnrollmentState,
            t.choice("enrollment_state", ("active", "invited", "inactive"), "active"),
        ),
        journal=t.path("journal"),
        journal_dir=t.path("journal_dir"),
        report=t.path("report"),
        via=cast(Via, t.choice("via", VIA_CHOICES, "rest")),
    )
    t.finish()
    return out


def _sis_import(t: _Table) -> SisImportConfig:
    out = SisImportConfig(
        account=t.text("account", "self") or "self",
        rows_per_second=t.number("rows_per_second", 100.0, low=0.001, high=None),
        start_seconds=t.number("start_seconds", 30.0, low=0.0, high=None),
        poll_min=t.number("poll_min", 1.0, low=0.01, high=None),
        poll_max=t.number("poll_max", 30.0, low=0.01, high=None),
        find_wait=t.number("find_wait", 600.0, low=0.0, high=None),
    )
    t.finish()
    return out


def _plan(t: _Table) -> PlanConfig:
    out = PlanConfig(
        drop_policy=cast(
            DropPolicy,
            t.choice("drop_policy", ("never", "inactivate", "conclude", "delete"), "never"),
        ),
        manual_enrollments=cast(
            ManualEnrollments, t.choice("manual_enrollments", ("leave", "include"), "leave")
        ),
        brake_max_share=t.number("brake_max_share", 0.2, low=0.0, high=1.0),
        brake_max_count=t.integer("brake_max_count", 100, minimum=0),
    )
    t.finish()
    return out


def _watch(t: _Table) -> WatchConfig:
    def column(name: str) -> str | None:
        value = t.text(name)
        if value is not None and not _IDENTIFIER.fullmatch(value):
            raise t.error(name, "a column name (letters, digits, _)", value)
        return value

    drift_at = t.text("drift_at", "03:00", empty=True)
    if drift_at and not _CLOCK.fullmatch(drift_at):
        raise t.error("drift_at", 'a UTC time "HH:MM", or "" for none', drift_at)
    out = WatchConfig(
        interval=t.number("interval", 2.0, low=0.05, high=86400.0),
        cursor_column=column("cursor_column"),
        cursor_overlap=t.number("cursor_overlap", 5.0, low=0.0, high=None),
        row_id_column=column("row_id_column"),
        full_every=t.number("full_every", 3600.0, low=0.0, high=None),
        csv_mode=cast(CsvMode | None, t.choice("csv_mode", ("snapshot", "delta"), "") or None),
        drift_at=drift_at or None,
        drift_every=t.number("drift_every", 0.0, low=0.0, high=None),
        keep_days=t.number("keep_days", 14.0, low=0.0, high=None),
        journal=t.path("journal"),
    )
    t.finish()
    return out


# -- safety ----------------------------------------------------------------------------------


def check_base_url(url: str) -> None:
    """Refuse what would leak the token: plain http to a non-loopback host, or a malformed URL."""
    if not url:
        raise ConfigError(
            "no Canvas base URL: set [canvas] base_url or CANVAS_BASE_URL "
            "(e.g. https://canvas.example.edu)"
        )
    problem = base_url_problem(url)  # the client enforces the same rule on every request
    if problem is not None:
        raise ConfigError(f"{redact_url(url)!r}: {problem}")


# -- canvas-tui init -------------------------------------------------------------------------

_LOOKS_LIKE_TOKEN: Final = re.compile(r"^\d+~[A-Za-z0-9]{20,}$")  # Canvas tokens: 1234~abc...
DEFAULT_TOKEN_FILE: Final = "~/.config/canvas-tui/token"  # noqa: S105 -- a path


def init_main(args: argparse.Namespace, *, ask: Callable[[str], str] | None = None) -> int:
    """`canvas-tui init`: write a starter config from flags, or by asking on a terminal;
    `--example` prints the documented example (every key) instead."""
    if getattr(args, "example", False):
        from canvas_tui.resources import resource_text

        sys.stdout.write(resource_text("config.example.toml"))
        return 0
    target = Path(args.path)
    if target.exists() and not args.force:
        print(
            f"canvas-tui: error: {target} already exists; use --force to overwrite it",
            file=sys.stderr,
        )
        return 2
    interactive = not args.no_input and (ask is not None or sys.stdin.isatty())
    prompt = ask or input

    def value(flag: str | None, question: str, default: str) -> str:
        if flag:
            return flag
        if not interactive:
            return default
        answer = prompt(f"{question} [{default}]: ").strip()
        return answer or default

    try:
        base_url = value(args.base_url, "Canvas base URL", "https://canvas.example.edu").rstrip("/")
        check_base_url(base_url)
        token_file = value(args.token_file, "File holding the API token", DEFAULT_TOKEN_FILE)
        if _LOOKS_LIKE_TOKEN.match(token_file.strip()):
            raise ConfigError(
                "that looks like an API token, not a file name: save the token in a file "
                "(chmod 600) and give its path; the token never goes into the config"
            )
        source = value(args.source, "Source enrollments.csv", "enrollments.csv")
    except ConfigError as exc:
        print(f"canvas-tui: error: {exc}", file=sys.stderr)
        return 2
    except EOFError:
        print("canvas-tui: error: no answer; pass --base-url etc. or --no-input", file=sys.stderr)
        return 2

    document = starter_document(base_url=base_url, token_file=token_file, source=source)
    write_config(target, document)
    load_config(target, env={})  # what we wrote must read back
    token_path = target.parent / Path(token_file).expanduser()  # as load_config resolves it
    print(f"wrote {target}")
    if not token_path.exists():
        print(
            f"next: put your Canvas API token in {token_file} and run: chmod 600 {token_file}\n"
            f"      (or set {ENV_TOKEN}); then run: canvas-tui check -c {target}"
        )
    else:
        print(f"next: canvas-tui check -c {target}")
    return 0


def starter_document(*, base_url: str, token_file: str, source: str) -> dict[str, Any]:
    """The starter config as TOML data; the token itself never goes in it."""
    return {
        "canvas": {"base_url": base_url, "token_file": token_file, "timeout": 30.0},
        "source": {"kind": "csv", "path": source, "format": "canvas", "encoding": "utf-8"},
        "sync": {"notify": False, "enrollment_state": "active"},
        "plan": {
            "drop_policy": "never",
            "manual_enrollments": "leave",
            "brake_max_share": 0.2,
            "brake_max_count": 100,
        },
    }


def write_config(path: Path, document: Mapping[str, Any]) -> None:
    import tomli_w

    header = (
        "# canvas-tui configuration (written by `canvas-tui init`).\n"
        "# Every key, documented: `canvas-tui init --example`. Keep the API token out of this\n"
        "# file: token_file names a file that holds it (chmod 600), or set CANVAS_API_TOKEN.\n\n"
    )
    path.write_text(header + tomli_w.dumps(document), encoding="utf-8")


# ---- where a run's journal goes (decided before the engine, and its imports, start) ----


def default_journal_path(directory: Path | None = None) -> Path:
    """`<user state dir>/runs/<UTC timestamp>.journal`, never an existing file."""
    from canvas_tui.paths import default_journal_dir

    directory = directory or default_journal_dir()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{stamp}.journal"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}-{n}.journal"
    return path


def journal_path_for(config: Config, journal_path: Path | None = None) -> Path:
    """The journal a run uses: the one asked for, the config's, else a new one in journal_dir."""
    return Path(
        journal_path or config.sync.journal or default_journal_path(config.sync.journal_dir)
    )
