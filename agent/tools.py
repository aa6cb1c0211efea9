"""Running a board's own tools: found by absolute path, through ``sudo -n`` when needed, with the sudoers fix.

Every board family changes hardware through this module, so the privilege rules
(root, FARM_NO_SUDO, simulated boards never use sudo) and the remedy a user sees
when sudo refuses are the same for every tool a family runs.
"""

import os

from .errors import PowerError
from .sysfs import device_root

NO_SUDO_ENV = "FARM_NO_SUDO"
TOOL_TIMEOUT = 60.0
# Where sudo's secure_path and a login's PATH usually keep these tools; an
# agent started over SSH may have neither /usr/sbin nor /sbin on its PATH.
TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")
SUDO_REFUSALS = ("a password is required", "is not allowed to execute", "not in the sudoers file",
                 "a terminal is required", "no tty present")


def find_tool(name):
    """Absolute path of a tool: sudo rules match absolute paths, so we never run a bare name.

    PATH is searched here rather than by ``shutil.which``: importing shutil (bz2, lzma and fnmatch with
    it) was a tenth of the agent's start, for one loop over PATH.
    """
    folders = [f for f in os.environ.get("PATH", os.defpath).split(os.pathsep) if f]
    for folder in folders + list(TOOL_DIRS):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def needs_sudo():
    """Whether privileged tools go through sudo: not as root, not with FARM_NO_SUDO, not on a simulated board.

    A simulated board's files belong to the login user, and sudo would drop
    FARM_DEVICE_ROOT from the environment, aiming the tools at the real machine.
    """
    return os.geteuid() != 0 and not os.environ.get(NO_SUDO_ENV) and os.path.abspath(device_root()) == "/"


def sudoers_remedy(commands):
    """The minimal sudoers line that lets this user run exactly ``commands`` as root."""
    line = "{} ALL=(root) NOPASSWD: {}".format(user(), ", ".join(commands))
    return ("Let the agent's user run them without a password: put this line in /etc/sudoers.d/farm "
            "(edit with `sudo visudo -f /etc/sudoers.d/farm`):\n    " + line
            + "\nor run the agent as root, or set {}=1 if the tools work unprivileged.".format(NO_SUDO_ENV))


def user():
    import getpass  # only for messages: it brings termios and locale into every agent start otherwise

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container; any name beats a crash
        return str(os.geteuid())


def run_tool(argv, privileged=False, remedy_commands=None, stdin_text=None, timeout=TOOL_TIMEOUT):
    """Run a tool; return (returncode, stdout, stderr). ``argv[0]`` must be absolute.

    Privileged runs go through ``sudo -n`` (never prompting) unless we are root
    or FARM_NO_SUDO is set; a refusal raises PowerError with the sudoers line
    that fixes it.
    """
    # Here, not at the top: a contact that runs no tool (a PC's facts) starts without subprocess,
    # which brings selectors, signal and threading (traceback on 3.6): a sixth of the facts' imports.
    import subprocess

    command = list(argv)
    via_sudo = privileged and needs_sudo()
    if via_sudo:
        sudo = find_tool("sudo")
        if sudo is None:
            raise PowerError("{} must run as root, the agent is not root and sudo is not installed".format(
                argv[0]), sudoers_remedy(remedy_commands or [argv[0]]))
        command = [sudo, "-n"] + command
    try:
        done = subprocess.run(command, check=False, input=stdin_text, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout,
                              # No stdin means EOF: a tool that prompts (a --store over an existing
                              # file, a mode change asking to reboot) fails instead of hanging.
                              stdin=None if stdin_text is not None else subprocess.DEVNULL)
    except (OSError, IOError) as exc:
        raise PowerError("cannot run {}: {}".format(command[0], exc))
    except subprocess.TimeoutExpired:
        raise PowerError("{} did not finish within {:.0f} s".format(" ".join(command), timeout))
    if via_sudo and done.returncode != 0 and _sudo_refused(done.stderr):
        raise PowerError("sudo refused to run {} for user {}: {}".format(
            " ".join(argv), user(), done.stderr.strip()), sudoers_remedy(remedy_commands or [argv[0]]))
    return done.returncode, done.stdout, done.stderr


def _sudo_refused(stderr):
    text = stderr.lower()
    return text.startswith("sudo:") or any(marker in text for marker in SUDO_REFUSALS)
