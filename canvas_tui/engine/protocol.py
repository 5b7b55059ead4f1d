"""What the console and the engine process (engine/worker.py) say to each other.

The console spawns the engine, whose first word is `Hello` with its `PROTOCOL_VERSION`: a console
that finds another version stops there with a clear error, before either side reads a message
whose shape may differ. Then the console sends an `EngineSpec`, and the engine answers `Ready`
(the session is open; the version again) or `StartFailed`. From then on:

    console -> engine   Command     a RunControl command (the table below), answered at once
                        Call        an operation that takes time (`Op`): load, run, plan, rosters
    engine -> console   Reply       the answer to a Command or a Call, with a fresh snapshot
                        Progress    load rows, roster pages, while a Call runs
                        Snapshot    the run's state, ten times a second
                        Published   a run phase change (per-record events stay in the engine)

A process that drives a run itself (a headless `sync`, a `watch`) serves the same messages to
consoles that attach (engine/attach.py): its first word is `Hello`, the console answers `Attach`
instead of a spec, and the host answers `Ready`. An attached console sends no `Call` but the
roster reads, and a `Command` only when it attached with control: a read-only one is answered
`ControlRefused`, and the command is never run.

Messages are pickled dataclasses; each kind has a `tag` for logs and for reading this table.
Unpickling runs code of the sender's choosing, so each end speaks only to its own user: the
console spawned its engine, and an attach socket checks its peer's uid (engine/attach.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Final, ParamSpec, TypeVar

from canvas_tui.engine.state import RunCommands, RunPhaseChanged, RunState

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import httpx

    from canvas_tui.config import Config, SourceConfig

# Bump on any change to the messages below or to what a command or operation takes or answers.
# 2: attach (console --attach); 3: to_front, RunState.front (issue 17); 4: RunState.sis_import
# (its abort), the abort_import command, apply_plan's answer (the channel taken) (issue 15)
PROTOCOL_VERSION: Final = 4

P = ParamSpec("P")
R = TypeVar("R")

# Builds the engine's HTTP transport (the demo's in-process simulator). The engine enters it
# around the session and leaves it when the session closes. It crosses to the engine pickled,
# so it must pickle by reference: a module-level function, or a functools.partial of one.
TransportFactory = Callable[[], "AbstractContextManager[httpx.AsyncBaseTransport]"]


class EngineError(RuntimeError):
    """An error from the engine process that could not be sent back as itself, or the engine
    process failing (not starting, dying, speaking another protocol)."""


class ControlRefused(EngineError):
    """A command or an operation that this connection may not send: a console attached
    read-only sends no command, and no attached console loads, plans or runs."""


# ---- startup --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything the engine process needs to open the session the console asked for."""

    tag: ClassVar[str] = "spec"
    config: Config
    source: SourceConfig | str | Path | None = None  # for `open_source`; None: resume the journal
    journal_path: Path | None = None
    max_concurrency: int | None = None
    governor_leak: float | None = None  # against a time-scaled simulator (tests, benchmarks)
    transport: TransportFactory | None = None  # None: the network, as configured


@dataclass(frozen=True, slots=True)
class Hello:
    """The engine's first message, sent before it reads the spec. Its shape never changes, so
    a console of any version can read it and compare versions."""

    tag: ClassVar[str] = "hello"
    version: int  # the engine's PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Attach:
    """An attaching console's answer to `Hello` (in place of a spec): follow the host's run,
    with control (commands) or read-only."""

    tag: ClassVar[str] = "attach"
    control: bool = False


@dataclass(frozen=True, slots=True)
class Ready:
    """The engine's answer to the spec: the session is open."""

    tag: ClassVar[str] = "ready"
    version: int  # the engine's PROTOCOL_VERSION
    journal_path: Path
    resumed: bool
    notes: tuple[str, ...]
    snapshot: RunState
    # the host is a service (`watch`): its run ends FINISHED whenever the changes read so far
    # are sent, and goes on with the next read; an attached console says it is watching
    service: bool = False


@dataclass(frozen=True, slots=True)
class StartFailed:
    """The engine's answer to the spec when the session could not be opened (ConfigError, ...)."""

    tag: ClassVar[str] = "failed"
    error: BaseException


def check_version(message: object) -> None:
    """Raise EngineError unless `message` (Hello or Ready) is from an engine of this console's
    protocol version: another one comes from another install of canvas-tui."""
    version = message.version if isinstance(message, Hello | Ready) else None
    if version is None:
        raise EngineError(
            f"the engine process answered {type(message).__name__}, not {Hello.__name__}: it is "
            f"not the canvas-tui of this console (protocol version {PROTOCOL_VERSION})"
        )
    if version != PROTOCOL_VERSION:
        raise EngineError(
            f"the engine process speaks protocol version {version}, this console "
            f"{PROTOCOL_VERSION}: the two come from different installs of canvas-tui; "
            "reinstall so they match"
        )


def check_ready(message: object) -> Ready:
    """The engine's answer to the spec as `Ready`; raises its startup error (ConfigError, ...)."""
    if isinstance(message, StartFailed):
        raise message.error
    if not isinstance(message, Ready):
        raise EngineError(f"the engine process answered {type(message).__name__}, not Ready")
    check_version(message)
    return message


# ---- the command table ----------------------------------------------------------------------------

# Every RunCommands method, by name: the commands the engine serves, derived, never listed.
COMMANDS: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {
        name: member
        for name, member in vars(RunCommands).items()
        if not name.startswith("_") and callable(member)
    }
)

# What a command answers once the engine is gone: refused, not raised (the snapshot says why).
_REFUSED_BY_TYPE: Final[Mapping[object, object]] = {type(None): None, bool: False, int: 0}


def _refusals() -> Mapping[str, object]:
    from typing import get_type_hints

    out: dict[str, object] = {}
    for name, method in COMMANDS.items():
        answer = get_type_hints(method)["return"]
        if answer not in _REFUSED_BY_TYPE:
            raise TypeError(f"RunCommands.{name} answers {answer}: say what it answers refused")
        out[name] = _REFUSED_BY_TYPE[answer]
    return MappingProxyType(out)


REFUSED: Final = _refusals()


def command_name(command: Callable[..., Any]) -> str:
    """The wire name of `command`, one of the RunCommands methods (`RunCommands.skip`)."""
    name = getattr(command, "__name__", "")
    if COMMANDS.get(name) is not command:
        raise ValueError(f"{command!r} is not a RunCommands method")
    return name


def invoke(
    runner: RunCommands,
    command: Callable[Concatenate[RunCommands, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run `command` (`RunCommands.skip`, ...) on an engine's own runner."""
    method: Callable[P, R] = getattr(runner, command_name(command))
    return method(*args, **kwargs)


# ---- messages after startup -----------------------------------------------------------------------


class Op(StrEnum):
    """The operations that take time, each answered by one Reply when it is done."""

    LOAD = "load"
    RUN = "run"
    PLAN = "plan"
    APPLY_PLAN = "apply_plan"
    GET_COURSE = "get_course"
    LIST_ENROLLMENTS = "list_enrollments"
    LIST_COURSE_SECTIONS = "list_course_sections"
    CLOSE = "close"


# What an attached console may call: reads of Canvas, through the host's client and governor.
ATTACHED_OPS: Final = frozenset({Op.GET_COURSE, Op.LIST_ENROLLMENTS, Op.LIST_COURSE_SECTIONS})


@dataclass(frozen=True, slots=True)
class Command:
    """console -> engine: a RunControl command by its name in COMMANDS."""

    tag: ClassVar[str] = "command"
    call_id: int
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    """console -> engine: start an operation."""

    tag: ClassVar[str] = "call"
    call_id: int
    op: Op
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """engine -> console: the run's state; `seq` orders snapshots that cross in transit."""

    tag: ClassVar[str] = "snapshot"
    seq: int
    state: RunState


@dataclass(frozen=True, slots=True)
class Reply:
    """engine -> console: a Command's or Call's answer (`error` when it raised), with the state
    right after it, so a command's effect shows in the very next snapshot read."""

    tag: ClassVar[str] = "reply"
    call_id: int
    snapshot: Snapshot
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """engine -> console: a running Call's progress callback, with its arguments."""

    tag: ClassVar[str] = "progress"
    call_id: int
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Published:
    """engine -> console: an event the console must see at once."""

    tag: ClassVar[str] = "event"
    event: RunPhaseChanged


ToEngine = Command | Call
ToConsole = Reply | Progress | Snapshot | Published
