"""Attaching a console to a run that another process drives (a headless `sync`, a `watch`).

The host serves engine/protocol.py on a Unix socket beside its journal, `JOURNAL.sock`: the
same messages the console speaks with the engine process it spawns (engine/worker.py), so an
attached console is a `RemoteSession` like any other. The host pushes its snapshot and its phase
changes; the console reads records straight from the journal, read-only.

Who may attach: the same OS user, and nobody else. Messages are pickles, and unpickling runs
the sender's code, so each end checks the other before it reads a byte of it:

- the host binds the socket 0600 (under a umask that never lets it exist wider, then chmod),
  and refuses to serve from a directory that every user may write to (no sticky bit): there
  another user could put a socket of their own in its place;
- on each connection the host reads the peer's uid from the kernel (SO_PEERCRED) and closes
  the connection unless it is its own, whatever the file's mode says;
- the console checks the socket (ours, 0600, a socket), its directory (the same rule), then,
  once connected, that the process at the other end runs as its own uid.

A console attaches read-only unless it asks for control (`console --attach J --control`): a
read-only one is refused every command, by the host (a `ControlRefused` reply; the command
never runs) as well as by its own session, which never sends one. No attached console loads,
plans or runs: it may read rosters through the host's client and governor, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from canvas_tui.engine.protocol import (
    ATTACHED_OPS,
    COMMANDS,
    PROTOCOL_VERSION,
    Attach,
    Call,
    Command,
    ControlRefused,
    EngineError,
    Hello,
    Op,
    Progress,
    Published,
    Ready,
    Reply,
    Snapshot,
    check_ready,
    check_version,
    invoke,
)
from canvas_tui.engine.state import Event, RunPhaseChanged
from canvas_tui.engine.wire import Outbox, sendable

if TYPE_CHECKING:
    from canvas_tui.engine.remote import RemoteSession
    from canvas_tui.engine.session import Session

log = logging.getLogger(__name__)

SOCKET_SUFFIX: Final = ".sock"
SOCKET_MODE: Final = 0o600
SNAPSHOT_SECONDS: Final = 0.2  # what a person watching needs; each guest costs a snapshot a tick
MAX_GUESTS: Final = 8  # each holds two threads of the host's
HANDSHAKE_SECONDS: Final = 30.0  # a connection that says no Attach by then loses its place
# sun_path holds 108 bytes on Linux, 104 on macOS, the terminating NUL included
_SUN_PATH_MAX: Final = 100
_PROC_FD: Final = Path("/proc/self/fd")


class AttachError(EngineError):
    """This journal's run cannot be attached to (none is serving it), or not safely."""


def socket_path(journal: Path) -> Path:
    """Where the process driving `journal` serves consoles that attach: beside it."""
    return journal.with_name(journal.name + SOCKET_SUFFIX)


def directory_problem(directory: Path) -> str | None:
    """Why a socket in `directory` could be replaced by another user's, or None. A directory
    that every user may write to lets any of them rename a socket away and bind their own, unless
    its sticky bit keeps each user to their own entries (as /tmp's does)."""
    try:
        st = directory.stat()
    except OSError as exc:
        return f"{directory}: {exc.strerror or exc}"
    if st.st_uid not in (os.geteuid(), 0):
        return f"{directory} belongs to another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return (
            f"{directory} may be written by every user (mode {stat.S_IMODE(st.st_mode):04o}, "
            "no sticky bit): another user could put a socket of theirs in its place"
        )
    return None


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket, from the kernel."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise AttachError(
            "this system does not say which user is at the other end of a socket "
            "(SO_PEERCRED): attaching is not offered here"
        )
    pid_uid_gid = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", pid_uid_gid)[1])


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for `path` that fits in sun_path: the path itself, or, when a deep journal
    makes it longer, the same file named through /proc/self/fd and a descriptor of its
    directory (Linux); elsewhere a path too long is an AttachError that says so."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    if not _PROC_FD.is_dir():
        raise AttachError(f"{path} is too long for a socket address: use a shorter journal path")
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        address = f"{_PROC_FD}/{fd}/{path.name}"
        if len(os.fsencode(address)) > _SUN_PATH_MAX:
            raise AttachError(f"{path.name} is too long a name for a socket: shorten the journal's")
        yield address
    finally:
        os.close(fd)


# ---- the host's side ------------------------------------------------------------------------------


class _Guest:
    """One attached console: a thread reads its messages (a slow or half-written one never
    stalls the host's loop), an Outbox thread sends to it."""

    def __init__(self, server: AttachServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.conn = Connection(os.dup(sock.fileno()))
        self.outbox = Outbox(self.conn)
        self.control: bool | None = None  # None until its Attach arrives
        self.closing = False  # set on the host's loop, once
        self.outbox.put(Hello(PROTOCOL_VERSION))  # the handshake's first word
        self._reader = threading.Thread(target=self._read, name="attach-reader", daemon=True)
        self._reader.start()

    @property
    def following(self) -> bool:
        return self.control is not None and not self.closing

    def _read(self) -> None:
        loop = self.server.loop
        while True:
            try:
                message = self.conn.recv()
            except Exception:  # EOF, a reset, or bytes that are no message: the guest is gone
                with contextlib.suppress(RuntimeError):  # the loop closed first
                    loop.call_soon_threadsafe(self.server.drop, self)
                return
            try:
                loop.call_soon_threadsafe(self.server.dispatch, self, message)
            except RuntimeError:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Flush and disconnect (in a thread: joining takes a moment); called once."""
        self.outbox.close(timeout)  # what is queued (the last snapshot) goes out first
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv
        self._reader.join(timeout)
        self.conn.close()
        self.sock.close()


class AttachServer:
    """Serves the run of `session` to consoles that attach (see module docs). `start` binds the
    socket (raising AttachError when it cannot, safely); `close` sends each guest the final
    snapshot, disconnects them and removes the socket."""

    def __init__(
        self,
        session: Session,
        *,
        snapshot_seconds: float = SNAPSHOT_SECONDS,
        service: bool = False,
    ) -> None:
        self.session = session
        self.service = service  # `watch`: see Ready.service
        self.path = socket_path(session.journal_path)
        self.snapshot_seconds = snapshot_seconds
        self.loop = asyncio.get_running_loop()
        self.guests: list[_Guest] = []
        self._seq = itertools.count(1)
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def start(cls, session: Session, **kwargs: Any) -> AttachServer:
        """Serve `session`'s run; raises AttachError (with the reason) if it cannot."""
        server = cls(session, **kwargs)
        server._bind()
        server._unsubscribe = session.runner.subscribe(server._event)
        server._pusher = server.loop.create_task(server._push_snapshots())
        return server

    def _bind(self) -> None:
        peer_uid_supported = getattr(socket, "SO_PEERCRED", None) is not None
        if not peer_uid_supported:
            raise AttachError("this system cannot check who attaches (no SO_PEERCRED)")
        if problem := directory_problem(self.path.parent):
            raise AttachError(problem)
        with contextlib.suppress(FileNotFoundError):
            # the run holds the journal's lock, so a socket here was left by a run that died
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise AttachError(f"{self.path} exists and is not a socket: left as it is")
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(self.path) as address:
                # the umask is the process's: for the instant of the bind, nothing this process
                # creates may be opened by anyone else (narrower is harmless, wider never)
                previous = os.umask(0o177)
                try:
                    listener.bind(address)
                finally:
                    os.umask(previous)
            os.chmod(self.path, SOCKET_MODE)
            st = self.path.lstat()
            self._inode = (st.st_dev, st.st_ino)
            listener.listen(MAX_GUESTS)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise AttachError(f"cannot serve {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.loop.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            log.warning("accepting an attaching console failed", exc_info=True)
            return
        try:
            uid = peer_uid(sock)
        except (OSError, AttachError):
            uid = -1
        if uid != os.geteuid():
            log.warning("refused a console of another user (uid %s) on %s", uid, self.path)
            sock.close()
            return
        if len(self.guests) >= MAX_GUESTS:
            log.warning("refused a console: %d are attached already", MAX_GUESTS)
            sock.close()
            return
        sock.setblocking(True)
        guest = _Guest(self, sock)
        self.guests.append(guest)
        self.loop.call_later(HANDSHAKE_SECONDS, self._unless_attached, guest)

    def _unless_attached(self, guest: _Guest) -> None:
        if guest.control is None:
            self._close_guest(guest)

    # ---- messages (on the host's loop) ---------------------------------------------------------

    def state(self) -> Snapshot:
        return Snapshot(next(self._seq), self.session.runner.snapshot())

    def dispatch(self, guest: _Guest, message: object) -> None:
        if guest.closing:
            return
        if guest.control is None:
            if isinstance(message, Attach):
                guest.control = bool(message.control)
                guest.outbox.put(
                    Ready(
                        PROTOCOL_VERSION,
                        self.session.journal_path,
                        self.session.resumed,
                        tuple(self.session.notes),
                        self.session.runner.snapshot(),
                        service=self.service,
                    )
                )
            else:  # not one of ours (or another version): say nothing more
                self._close_guest(guest)
            return
        if isinstance(message, Command):
            self._command(guest, message)
        elif isinstance(message, Call):
            self._call(guest, message)
        else:
            self._close_guest(guest)

    def _command(self, guest: _Guest, message: Command) -> None:
        if not guest.control:
            self._refuse(
                guest,
                message.call_id,
                f"this console attached read-only: {message.name!r} was not sent to the run "
                "(attach with --control to pause, resume or retry)",
            )
            return
        command = COMMANDS.get(message.name)
        if command is None:
            self._reply(guest, message.call_id, error=EngineError(f"no command {message.name!r}"))
            return
        try:
            value = invoke(self.session.runner, command, *message.args, **message.kwargs)
        except Exception as exc:
            self._reply(guest, message.call_id, error=exc)
        else:
            self._reply(guest, message.call_id, value)

    def _call(self, guest: _Guest, message: Call) -> None:
        if message.op not in ATTACHED_OPS:
            self._refuse(
                guest,
                message.call_id,
                f"an attached console follows the run: {message.op} is the host's to do",
            )
            return
        task = self.loop.create_task(self._read_canvas(guest, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_canvas(self, guest: _Guest, message: Call) -> None:
        client = self.session.client
        kwargs = dict(message.kwargs)
        try:
            if client is None:
                raise EngineError("the run has no Canvas client to read rosters with")
            if message.op is Op.GET_COURSE:
                value: Any = await client.get_course(*message.args)
            elif message.op is Op.LIST_COURSE_SECTIONS:
                value = await client.list_course_sections(*message.args)
            else:
                on_page = None
                if kwargs.pop("on_page", False):

                    def on_page(*args: Any) -> None:
                        guest.outbox.put(Progress(message.call_id, args))

                value = await client.list_enrollments(on_page=on_page, **kwargs)
        except Exception as exc:
            self._reply(guest, message.call_id, error=exc)
        else:
            self._reply(guest, message.call_id, value)

    def _refuse(self, guest: _Guest, call_id: int, why: str) -> None:
        log.warning("%s", why)
        self._reply(guest, call_id, error=ControlRefused(why))

    def _reply(
        self, guest: _Guest, call_id: int, value: Any = None, error: BaseException | None = None
    ) -> None:
        error = sendable(error) if error is not None else None
        guest.outbox.put(Reply(call_id, self.state(), value, error))

    def _event(self, event: Event) -> None:
        if isinstance(event, RunPhaseChanged):
            for guest in self.guests:
                if guest.following:
                    guest.outbox.put(Published(event))

    async def _push_snapshots(self) -> None:
        while True:
            if any(g.following for g in self.guests):
                snapshot = self.state()
                for guest in self.guests:
                    if guest.following:
                        guest.outbox.snapshot(snapshot)
            await asyncio.sleep(self.snapshot_seconds)

    def drop(self, guest: _Guest) -> None:
        """A guest's connection ended (it detached, or it sent what is no message)."""
        self._close_guest(guest)

    def _close_guest(self, guest: _Guest) -> None:
        if guest.closing:
            return
        guest.closing = True
        self.guests.remove(guest)
        # joining its threads may take a moment: not on the host's loop
        threading.Thread(target=guest.close, name="attach-close", daemon=True).start()

    # ---- ending ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop serving: each guest gets the final snapshot, then its connection closes, and
        the socket is removed (unless another process has bound one there since)."""
        if self._pusher is not None:
            self._pusher.cancel()
            self._pusher = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in list(self._tasks):
            task.cancel()
        if self._listener is not None:
            self.loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            self._remove_socket()
        guests, self.guests = self.guests, []
        if guests:
            final = self.state()
            for guest in guests:
                if guest.following:
                    guest.outbox.snapshot(final)
                guest.closing = True
            await asyncio.gather(*(asyncio.to_thread(g.close) for g in guests))

    def _remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()


def serve_attach(
    session: Session, warn: Callable[[str], None], *, service: bool = False
) -> AttachServer | None:
    """Serve `session`'s run to consoles that attach, or say why not through `warn` and return
    None: the run goes on either way (an attach socket is a convenience, never a reason to stop).
    `service`: the host is a `watch` (Ready.service)."""
    try:
        return AttachServer.start(session, service=service)
    except AttachError as exc:
        warn(f"consoles cannot attach to this run: {exc}")
        return None


# ---- the console's side ---------------------------------------------------------------------------


def check_socket(path: Path) -> None:
    """Raise AttachError unless `path` is a socket that only this user can reach."""
    journal = path.with_name(path.name.removesuffix(SOCKET_SUFFIX))
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise AttachError(
            f"no run is serving {journal} (no {path.name} beside it): it has ended, or was "
            f"started with --no-attach. Open it with `canvas-tui console --journal {journal} "
            "--read-only` to look at it"
        ) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise AttachError(f"{path} is not a socket")
    if st.st_uid != os.geteuid():
        raise AttachError(
            f"{path} belongs to another user (uid {st.st_uid}): attach as the user the run is"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise AttachError(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}): not attaching"
        )
    if problem := directory_problem(path.parent):
        raise AttachError(problem)


def attach_engine(
    journal: Path, *, control: bool = False, timeout: float | None = None
) -> RemoteSession:
    """Attach to the run that another process drives on `journal`: a RemoteSession that
    follows it, read-only unless `control`. Raises AttachError when no run is serving it, or
    not safely (see the module docs), EngineError when the host answers wrongly."""
    # the console's side only: a `sync` serving attachments never loads the client half
    from canvas_tui.engine.remote import STARTUP_SECONDS, RemoteSession

    timeout = STARTUP_SECONDS if timeout is None else timeout
    path = socket_path(journal.absolute())
    check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            with _address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise AttachError(
                f"no run is serving {journal}: {path.name} is left from a run that stopped"
            ) from None
        uid = peer_uid(sock)
        if uid != os.geteuid():
            raise AttachError(f"the process serving {path} runs as another user (uid {uid})")
        sock.settimeout(None)
        conn = Connection(sock.detach())
    finally:
        sock.close()
    try:
        ready = _handshake(conn, control, timeout)
    except BaseException:
        conn.close()
        raise
    return RemoteSession(None, conn, ready, None, control=control)


def _handshake(conn: Connection, control: bool, timeout: float) -> Ready:
    def receive() -> object:
        if not conn.poll(timeout):
            raise AttachError(f"the run's host did not answer within {timeout:.0f} s")
        return conn.recv()

    try:
        check_version(receive())
        conn.send(Attach(control))
        return check_ready(receive())
    except (EOFError, OSError):
        raise AttachError("the run's host closed the connection") from None
