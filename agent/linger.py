"""An agent that stays running between contacts, reached through a Unix socket instead of a Python start.

Starting the host's Python and importing the agent is most of what a contact costs a host beyond
the SSH session itself (``farm inventory check`` on a simulated board: 68 of 137 ms of CPU). A
``serve`` session whose first request carries ``linger: {"name": NAME, "seconds": N}`` answers
with the socket's absolute path (``linger_socket``) and, when its session ends, starts a
daemon (``linger NAME N``) unless one already runs. The daemon imports what a session needs,
listens on ``STATE/linger/NAME.sock`` (0600, in a 0700 folder) and forks one child per
connection: the child is a ``serve`` session on the socket, so each contact gets a fresh
process with nothing left over from another, minus the start-up. The controller reaches the
socket through SSH's ``direct-streamlocal`` channel, which sshd serves itself: no shell, no
process started on the host.

NAME is the controller's digest of everything that makes the agent process what it is (the
interpreter, the environment, the agent's own hash), so a changed inventory reaches a new daemon,
never a stale one. A daemon exits after N seconds without a connection, when its interpreter or
its agent files change or disappear, or when its socket is removed; a lock held for its lifetime
keeps it one per NAME.
"""

import contextlib
import os
import stat
import sys
import time

from .restore_state import state_dir

REQUEST_FIELD = "linger"  # on a serve session's first request: {"name": NAME, "seconds": N}
REPLY_FIELD = "linger_socket"  # in the reply: the socket the next contact may use
LISTENING_FIELD = "linger_listening"  # in the reply to a request with "probe": whether a daemon listens there
COMMAND = "linger"
FOLDER = "linger"
MAX_SECONDS = 86400
CHECK_SECONDS = 30.0  # how often an idle daemon looks whether it went stale
# sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107
SHORT_FOLDER = "/tmp/farm-agent-{uid}"
NAME_CHARACTERS = frozenset("0123456789abcdef")


def valid_name(name):
    return isinstance(name, str) and 8 <= len(name) <= 40 and set(name) <= NAME_CHARACTERS


def socket_path(name):
    """In the agent's state folder; where that path is too long for a socket, in a private folder of /tmp."""
    path = os.path.join(os.path.abspath(state_dir()), FOLDER, name + ".sock")
    if len(path.encode("utf-8")) <= MAX_SOCKET_PATH:
        return path
    return os.path.join(SHORT_FOLDER.format(uid=os.getuid()), name + ".sock")


def _private_folder_ok(folder):
    """``folder`` exists as a real folder of this user that nobody else may enter (made so if absent)."""
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        os.mkdir(folder, 0o700)
    except OSError:
        pass  # there already (or cannot be made: the checks below say no)
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    # Another user's folder in /tmp could hold their socket under our name: never listen or point there.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    if info.st_mode & 0o077:
        try:
            os.chmod(folder, 0o700)  # ours: closing it is safe
        except OSError:
            return False
    return True


def listening(path):
    """Whether a daemon accepts connections on ``path`` (its session child sees the end at once)."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
        return True
    except (OSError, IOError):
        return False
    finally:
        probe.close()


class Offer(object):
    """What a serve session promised: a daemon under ``name`` once the session ends."""

    def __init__(self):
        self.name = None
        self.seconds = 0
        self.launcher = None

    def accept(self, request):
        """The socket path to reply with, or None where this request asks for no daemon or one cannot be had."""
        wish = request.get(REQUEST_FIELD)
        if not isinstance(wish, dict):
            return None
        name, seconds = wish.get("name"), wish.get("seconds")
        if not valid_name(name) or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return None
        if not 0 < seconds <= MAX_SECONDS:
            return None
        path = socket_path(name)
        folder = os.path.dirname(path)
        if len(path.encode("utf-8")) > MAX_SOCKET_PATH or not _private_folder_ok(folder):
            return None
        self.name, self.seconds = name, int(seconds)
        # The interpreter as the inventory names it: a wrapper script (env, taskset) whose content changes
        # starts agents another way, which the daemon must notice, as sys.executable cannot show it.
        self.launcher = _resolve(wish.get("python"))
        return path

    def fulfil(self):
        """At the session's end: start the daemon unless one holds its lock. Never raises."""
        if self.name is None or IN_DAEMON[0]:
            return
        try:
            if not _running(self.name):
                _spawn(self.name, self.seconds, self.launcher)
        except (OSError, IOError):
            pass  # no daemon: the next contact starts the agent as this one did


IN_DAEMON = [False]  # set in a daemon's session children: they answer, they start nothing


def _lock_path(name):
    return socket_path(name)[:-len(".sock")] + ".lock"


def _running(name):
    import fcntl

    try:
        handle = os.open(_lock_path(name), os.O_WRONLY | os.O_CREAT, 0o600)
    except (OSError, IOError):
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (OSError, IOError):
        return True  # held: a daemon is running, or starting
    finally:
        os.close(handle)  # closing releases a lock this process got
    return False


def _entry_argv():
    """How to start this agent again: its archive (or unpacked folder) as deployed, else ``-m agent``."""
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if program.endswith(".pyz") and os.path.isfile(program):
        return [sys.executable, program]
    return [sys.executable, "-m", "agent"]


def _resolve(command):
    """The absolute path of a command as a shell would find it, or None."""
    if not isinstance(command, str) or not command:
        return None
    if "/" in command:
        return os.path.abspath(os.path.expanduser(command))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, command)
        if folder and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _spawn(name, seconds, launcher=None):
    """Start ``linger NAME SECONDS [LAUNCHER]`` detached (double fork, own session), without subprocess."""
    argv = _entry_argv() + [COMMAND, name, str(seconds)] + ([launcher] if launcher else [])
    folder = os.path.dirname(socket_path(name))
    _make_private_folder(folder)
    log = os.path.join(folder, name + ".log")
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(err, 2)
        os.closerange(3, 1024)
        env = dict(os.environ)
        if argv[1] == "-m":  # run from a source tree (tests, `python -m agent`): the child must find it too
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        os.execve(argv[0], argv, env)
    finally:
        os._exit(127)


def _make_private_folder(folder):
    if not _private_folder_ok(folder):
        raise OSError("{} is not a private folder of this user".format(folder))


def _identity(launcher=None):
    """What the daemon runs: its interpreter (and the command that started it), its agent files. A change
    means it must go."""
    found = []
    for path in (sys.executable, launcher, _entry_argv()[1] if _entry_argv()[1] != "-m" else None,
                 os.path.dirname(os.path.abspath(__file__))):
        if path is None:
            continue
        try:
            info = os.stat(path)
        except OSError:
            return None
        found.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return found


def _socket_identity(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_dev


def run_daemon(name, seconds, launcher=None):
    """The ``linger`` command: listen on the socket and fork a serve session per connection, until idle."""
    import fcntl
    import select
    import socket

    if not valid_name(name) or not 0 < seconds <= MAX_SECONDS:
        sys.stderr.write("farm-agent: linger needs a hex NAME and 0 < SECONDS <= {}\n".format(MAX_SECONDS))
        return 2
    path = socket_path(name)
    _make_private_folder(os.path.dirname(path))
    lock = os.open(_lock_path(name), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (OSError, IOError):
        return 0  # another daemon has it
    if os.path.exists(path):
        os.unlink(path)  # its daemon is gone: it held the lock while it lived
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(mask)
    listener.listen(64)
    mine = _socket_identity(path)
    identity = _identity(launcher)
    # What a session imports, imported once here: a child starts with it in memory.
    import signal

    from . import __main__ as entry
    from . import contact  # noqa: F401 - the point is the import

    def stop(*_):
        raise SystemExit(0)

    # Stopped (farm lab down, a test's cleanup, a shutdown): remove the socket, as an idle exit does.
    signal.signal(signal.SIGTERM, stop)
    last_contact = time.monotonic()
    children = set()
    try:
        while True:
            _reap(children)
            left = last_contact + seconds - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([listener], [], [], min(left, CHECK_SECONDS))
            if _socket_identity(path) != mine or _identity(launcher) != identity:
                break  # replaced, removed, or its interpreter or agent changed: the next contact starts afresh
            if not ready:
                continue
            try:
                connection, _ = listener.accept()
            except (OSError, IOError):
                continue
            last_contact = time.monotonic()
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                listener.close()
                os.close(lock)  # the lock is the daemon's alone: a session outliving it must not hold it
                _session(connection, entry)
            connection.close()
            children.add(pid)
    finally:
        if _socket_identity(path) == mine:
            os.unlink(path)
        listener.close()
        log = path[:-len(".sock")] + ".log"
        with contextlib.suppress(OSError):
            if os.path.getsize(log) == 0:
                os.unlink(log)
    return 0


def _reap(children):
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except OSError:
            done = pid
        if done:
            children.discard(pid)


def _session(connection, entry):
    """A forked child: one serve session on ``connection``, then exit without running the daemon's cleanup."""
    import importlib

    code = 0
    try:
        IN_DAEMON[0] = True
        importlib.invalidate_caches()  # software installed since the daemon started must be found
        os.dup2(connection.fileno(), 0)
        os.dup2(connection.fileno(), 1)
        connection.close()
        sys.stdin = os.fdopen(0, "r", encoding="utf-8", errors="replace")
        sys.stdout = os.fdopen(1, "w", encoding="utf-8")
        entry.serve(sys.stdin, sys.stdout)
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001 - a child must never return into the daemon's loop
        code = 1
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        os._exit(code)
