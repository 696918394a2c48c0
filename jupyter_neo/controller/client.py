"""The thin side of the controller socket: find or start the controller, forward one command.

Imports only the standard library (and ``.wire``), so ``neo status`` costs a Python start, one
connect and the controller's answer instead of importing pydantic, the state store and a backend.
When no controller can serve (``NEO_CONTROLLER=off``, an unusable ``$NEO_HOME``, a client whose
``NEO_*`` environment differs from the controller's) the command runs in-process as before:
:class:`Unavailable` says so. :class:`Refused` is a one-line error for the user.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import stat
import sys
import time

from jupyter_neo.controller import wire

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# The C modules under ``socket`` and ``signal``: those wrap every constant in an enum at import
# (~7 ms of a command that otherwise costs the interpreter's start and one round trip).
_signal: Any = __import__("_signal")

START_TIMEOUT = 60.0
TERMINAL_VARS = ("TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "XDG_CONFIG_HOME")


class Unavailable(Exception):
    """No controller can serve this command; the caller runs it in-process."""


class Refused(Exception):
    """The controller (or its socket) must not be used; ``str()`` is the one line to print."""


def home_dir() -> str:
    home = os.environ.get("NEO_HOME")
    if home:
        return os.path.abspath(home)
    import platformdirs  # only without NEO_HOME (a few ms; its rules are not ours to copy)

    return str(platformdirs.user_data_dir("jupyter-neo"))


def path_in(home: str, name: str) -> str:
    return os.path.join(home, name)


def check_owner(path: str) -> bool:
    """True when ``path`` is a socket we may use; False when absent. Refused when foreign."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise Unavailable(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise Refused(f"{path} is not a socket; remove it (or set NEO_HOME) and run the command again")
    if st.st_uid != os.getuid():
        raise Refused(
            f"refusing controller socket {path}: it belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}); remove it or set NEO_HOME to a directory of yours"
        )
    if st.st_mode & 0o077:
        raise Refused(
            f"refusing controller socket {path}: mode {stat.S_IMODE(st.st_mode):o} lets other users "
            "connect; remove it and run the command again"
        )
    return True


def _connect_unix(path: str) -> _socket.socket:
    """Connect, also when the path is longer than sun_path allows (via the directory's /proc fd)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) < 100:
            sock.connect(path)
        else:
            fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
            finally:
                os.close(fd)
    except BaseException:
        sock.close()
        raise
    return sock


def try_connect(home: str) -> _socket.socket | None:
    """A connection to a live controller, or None when none is listening."""
    path = path_in(home, wire.SOCKET)
    if not check_owner(path):
        return None
    try:
        return _connect_unix(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return None
        raise Unavailable(f"cannot connect to {path}: {exc.strerror}") from None


def controller_pid(home: str) -> int | None:
    """The pid of the live controller of ``home`` (its life lock is held), else None."""
    try:
        fd = os.open(path_in(home, wire.LIFE), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _spawn(home: str) -> Any:
    import subprocess  # only when starting one

    log = os.open(path_in(home, wire.LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "jupyter_neo.controller.daemon"],
            env={**os.environ, "NEO_HOME": home},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C in the terminal is for the command, not for it
            close_fds=True,
        )
    finally:
        os.close(log)


def connect(home: str, start: bool = True) -> _socket.socket:
    """A connection to the controller of ``home``, starting one (exactly one) if needed."""
    sock = try_connect(home)
    if sock is not None or not start:
        if sock is None:
            raise Unavailable("no controller is running")
        return sock
    try:
        os.makedirs(home, exist_ok=True)
        lock = os.open(path_in(home, wire.LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise Unavailable(f"cannot use {home}: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # racing starters queue here; the first one starts it
        sock = try_connect(home)
        if sock is not None:
            return sock
        proc = None
        if controller_pid(home) is None:
            # Nobody holds the life lock: a socket file left here is stale (a crashed controller).
            try:
                os.unlink(path_in(home, wire.SOCKET))
            except FileNotFoundError:
                pass
            proc = _spawn(home)
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.005
        while time.monotonic() < deadline:
            sock = try_connect(home)
            if sock is not None:
                return sock
            if proc is not None and proc.poll() is not None:
                raise Unavailable(f"the controller exited at start (code {proc.returncode}); see {wire.LOG}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        raise Unavailable("the controller did not start in time")
    finally:
        os.close(lock)


def hello(sock: _socket.socket) -> dict[str, Any]:
    msg = wire.recv(sock)
    if msg is None or msg.get("type") != "hello":
        raise Unavailable("the controller closed the connection")
    if msg.get("protocol") != wire.PROTOCOL:
        raise Refused(wire.mismatch(msg.get("protocol"), "controller"))
    return msg


def request(home: str, msg: dict[str, Any], start: bool = False) -> dict[str, Any]:
    """One request/answer exchange (``status``, ``stop``, ``ping``)."""
    sock = connect(home, start=start)
    try:
        hello(sock)
        wire.send(sock, {"protocol": wire.PROTOCOL, **msg})
        answer = wire.recv(sock)
        if answer is None:
            raise Unavailable("the controller closed the connection")
        if answer.get("type") == "error":
            raise Refused(str(answer.get("message")))
        return answer
    finally:
        sock.close()


def _terminal() -> dict[str, Any]:
    tty = {"stdout": sys.stdout.isatty(), "stderr": sys.stderr.isatty()}
    columns = None
    if tty["stdout"] or tty["stderr"]:
        try:
            columns = os.get_terminal_size((sys.stdout if tty["stdout"] else sys.stderr).fileno()).columns
        except OSError:
            columns = None
    return {"tty": tty, "columns": columns}


def run_command(argv: list[str]) -> int:
    """Forward one ``neo`` command line; print what comes back; return its exit code."""
    home = home_dir()
    sock = connect(home)
    try:
        # The request goes out before the controller's hello is read (one wake-up less); a
        # controller of another protocol version still answers hello first, refused below.
        env = {k: v for k, v in os.environ.items() if k in TERMINAL_VARS or k in wire.PER_REQUEST}
        wire.send(
            sock,
            {
                "type": "cli",
                "protocol": wire.PROTOCOL,
                "argv": argv,
                "cwd": os.getcwd(),
                "env": env,
                "fingerprint": wire.env_fingerprint(os.environ),
                **_terminal(),
            },
        )
        hello(sock)
        return _relay(sock)
    finally:
        sock.close()


def _relay(sock: _socket.socket) -> int:
    """Print the streamed output until the exit frame; Ctrl-C cancels this request only."""
    cancelled: list[bool] = []

    def on_sigint(signum: int, frame: object) -> None:
        if cancelled:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
        cancelled.append(True)
        try:
            wire.send(sock, {"type": "cancel"})
        except OSError:
            pass

    previous = _signal.signal(_signal.SIGINT, on_sigint)
    try:
        while True:
            msg = wire.recv(sock)
            if msg is None:
                sys.stderr.write(
                    "error: the neo controller exited while running this command "
                    "(the next command starts a new one; see: neo daemon logs)\n"
                )
                return 1
            kind = msg.get("type")
            if kind == "out":
                stream = sys.stdout if msg.get("fd") == 1 else sys.stderr
                stream.write(str(msg.get("data", "")))
                stream.flush()
            elif kind == "exit":
                return int(msg.get("code", 1))
            elif kind == "env_mismatch":
                raise Unavailable("the controller runs with another environment")
            elif kind == "error":
                raise Refused(str(msg.get("message")))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: whatever was starting or running was stopped\n")
        return 130
    except BrokenPipeError:  # `neo runs | head -1`: the reader left; closing cancels the request
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        _signal.signal(_signal.SIGINT, previous)
