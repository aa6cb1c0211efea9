"""Power modes: set one for a job, prove it took, and always put the board back.

A job's power mode is a spec such as ``{"name": "5W", "nvpmodel": 1,
"jetson_clocks": false, "settle_seconds": 2.0}`` (Jetson) or ``{"name":
"powersave", "governor": "powersave"}`` (Raspberry Pi, Dev Board, any cpufreq
Linux). ``applied(spec)`` records the board's mode, sets the spec, verifies it
and restores the original on the way out, exceptions and SIGTERM/SIGHUP
included. Because SIGKILL cannot be caught, the original is written to a state
file before anything changes; ``pending_restore()`` on the next agent start
puts it back.

Hardware is read below the device root (``facts.root_path``) and changed with
the board's own tools found on PATH, so a simulated board with stand-in tools
runs exactly this code.
"""

import contextlib
import getpass
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from .facts import detect_board, device_root, parse_cpu_list, read_text, root_path

STATE_DIR_ENV = "FARM_AGENT_DIR"
NO_SUDO_ENV = "FARM_NO_SUDO"
DEFAULT_SETTLE_SECONDS = 1.0
TOOL_TIMEOUT = 60.0
# Where sudo's secure_path and a login's PATH usually keep these tools; an
# agent started over SSH may have neither /usr/sbin nor /sbin on its PATH.
TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")
SUDO_REFUSALS = ("a password is required", "is not allowed to execute", "not in the sudoers file",
                 "a terminal is required", "no tty present")
# The seeds' boards: nvpmodel on Jetsons, the cpufreq governor everywhere else.
JETSON_HINTS = ("jetson", "tegra", "nvidia")
GOVERNOR_HINTS = ("raspberry", "rpi", "devboard", "dev board", "coral", "i.mx", "imx", "phanbook")


class PowerError(Exception):
    """The power mode cannot be set, verified or restored; ``remedy`` says how to fix it."""

    def __init__(self, message, remedy=None):
        Exception.__init__(self, message + ("\n" + remedy if remedy else ""))
        self.message = message
        self.remedy = remedy


# --- running the board's tools -------------------------------------------------------------

def find_tool(name):
    """Absolute path of a tool: sudo rules match absolute paths, so we never run a bare name."""
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    for folder in TOOL_DIRS:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def needs_sudo():
    """Whether privileged tools go through sudo: not as root, not with FARM_NO_SUDO, not on a simulated board.

    A simulated board's files belong to the login user, and sudo would drop
    FARM_DEVICE_ROOT from the environment, aiming the tools at the real machine.
    """
    return os.geteuid() != 0 and not os.environ.get(NO_SUDO_ENV) and os.path.abspath(device_root()) == "/"


def sudoers_remedy(commands):
    """The minimal sudoers line that lets this user run exactly ``commands`` as root."""
    line = "{} ALL=(root) NOPASSWD: {}".format(_user(), ", ".join(commands))
    return ("Let the agent's user run them without a password: put this line in /etc/sudoers.d/farm "
            "(edit with `sudo visudo -f /etc/sudoers.d/farm`):\n    " + line
            + "\nor run the agent as root, or set {}=1 if the tools work unprivileged.".format(NO_SUDO_ENV))


def _user():
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
                              # No stdin means EOF: a tool that prompts (jetson_clocks --store over
                              # an existing file, nvpmodel asking to reboot) fails instead of hanging.
                              stdin=None if stdin_text is not None else subprocess.DEVNULL)
    except (OSError, IOError) as exc:
        raise PowerError("cannot run {}: {}".format(command[0], exc))
    except subprocess.TimeoutExpired:
        raise PowerError("{} did not finish within {:.0f} s".format(" ".join(command), timeout))
    if via_sudo and done.returncode != 0 and _sudo_refused(done.stderr):
        raise PowerError("sudo refused to run {} for user {}: {}".format(
            " ".join(argv), _user(), done.stderr.strip()), sudoers_remedy(remedy_commands or [argv[0]]))
    return done.returncode, done.stdout, done.stderr


def _sudo_refused(stderr):
    text = stderr.lower()
    return text.startswith("sudo:") or any(marker in text for marker in SUDO_REFUSALS)


# --- CPUs, through the device root ------------------------------------------------------------

def cpus_online():
    text = read_text("sys/devices/system/cpu/online")
    try:
        return parse_cpu_list(text) if text and text.strip() else []
    except ValueError:
        return []


def _cpufreq(cpu, name):
    text = read_text("sys/devices/system/cpu/cpu{}/cpufreq/{}".format(cpu, name))
    return text.strip() if text is not None else None


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def cpu_max_freqs():
    """scaling_max_freq in kHz per online CPU, keyed by CPU number as a string (JSON keys)."""
    return {str(cpu): _int_or_none(_cpufreq(cpu, "scaling_max_freq")) for cpu in cpus_online()}


def governors():
    """The cpufreq governor of each online CPU that has cpufreq."""
    found = {}
    for cpu in cpus_online():
        value = _cpufreq(cpu, "scaling_governor")
        if value:
            found[str(cpu)] = value
    return found


def clocks_pinned():
    """True when every online CPU runs with min == max, which is what jetson_clocks does.

    Read from sysfs rather than ``jetson_clocks --show``: the script refuses to
    show anything unless it runs as root, and it only prints these same files.
    """
    pinned = []
    for cpu in cpus_online():
        low, high = _int_or_none(_cpufreq(cpu, "scaling_min_freq")), _int_or_none(_cpufreq(cpu, "scaling_max_freq"))
        if low is not None and high is not None:
            pinned.append(low == high)
    return bool(pinned) and all(pinned)


def _one_governor(found):
    values = sorted(set(found.values()))
    return values[0] if len(values) == 1 else (",".join(values) or None)


class GovernorControl(object):
    """The cpufreq governor, which every Linux board with cpufreq has (Jetsons too)."""

    def available(self):
        for cpu in cpus_online():
            text = _cpufreq(cpu, "scaling_available_governors")
            if text:
                return text.split()
        return []

    def set_all(self, governor):
        offered = self.available()
        if offered and governor not in offered:
            raise PowerError("cpufreq governor '{}' is not available on this board; it offers: {}".format(
                governor, ", ".join(offered)))
        targets = sorted(governors())
        if not targets:
            raise PowerError("this board has no cpufreq governor to set (no {})".format(
                root_path("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")))
        for cpu in targets:
            self._write(cpu, governor)

    def restore(self, saved):
        for cpu, governor in sorted((saved or {}).items()):
            if _cpufreq(cpu, "scaling_governor") not in (None, governor):
                self._write(cpu, governor)

    def _write(self, cpu, governor):
        path = root_path("sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor".format(cpu))
        try:
            with open(path, "w") as handle:
                handle.write(governor + "\n")
            return
        except (OSError, IOError) as exc:
            if not needs_sudo():
                raise PowerError("cannot set the governor in {}: {}".format(path, exc))
        # sysfs files belong to root: tee is the usual way to write one through sudo.
        tee = find_tool("tee") or "/usr/bin/tee"
        pattern = root_path("sys/devices/system/cpu") + "/cpu*/cpufreq/scaling_governor"
        code, _, err = run_tool([tee, path], privileged=True, stdin_text=governor + "\n",
                                remedy_commands=["{} {}".format(tee, pattern)])
        if code != 0:
            raise PowerError("cannot set the governor in {}: {}".format(path, err.strip()))


# --- drivers -----------------------------------------------------------------------------------

class GovernorDriver(object):
    """Raspberry Pi, Coral Dev Board and any other cpufreq board: the mode is the governor."""

    name = "governor"

    def __init__(self):
        self.governor = GovernorControl()

    def current_mode(self):
        found = governors()
        governor = _one_governor(found)
        return {"driver": self.name, "name": governor, "governor": governor, "governors": found}

    def check(self, spec):
        """The governor a spec asks for (its ``governor``, else its name when that is a governor)."""
        offered = self.governor.available()
        extra = [key for key in ("nvpmodel", "jetson_clocks") if spec.get(key) is not None]
        if extra:
            raise PowerError("power mode '{}' sets {}, which this board ({}) does not have; it takes a "
                             "cpufreq governor: {}".format(spec.get("name"), " and ".join(extra),
                                                            detect_board() or "unknown board",
                                                            ", ".join(offered) or "none"))
        governor = spec.get("governor") or (spec.get("name") if spec.get("name") in offered else None)
        if not governor:
            raise PowerError("power mode '{}' names no governor; this board's modes are cpufreq governors: "
                             "{}".format(spec.get("name"), ", ".join(offered) or "none"))
        return governor

    def save(self, state_dir):
        return self.current_mode()

    def set_mode(self, spec):
        self.governor.set_all(self.check(spec))

    def verify(self, spec):
        measured = _measure(self.current_mode())
        governor = self.check(spec)
        wrong = sorted(cpu for cpu, value in measured["governors"].items() if value != governor)
        if wrong:
            measured["mismatches"].append("governor of CPU(s) {} is not {}".format(", ".join(wrong), governor))
        measured["ok"] = not measured["mismatches"]
        return measured

    def restore(self, saved):
        self.governor.restore(saved.get("governors"))
        now = governors()
        wrong = sorted(cpu for cpu, value in (saved.get("governors") or {}).items()
                       if cpu in now and now[cpu] != value)
        if wrong:
            raise PowerError("governor of CPU(s) {} did not return to {}".format(", ".join(wrong), saved["name"]))


class JetsonDriver(object):
    """nvpmodel modes, with jetson_clocks as a separate on/off setting."""

    name = "nvpmodel"
    MODE_LINE = re.compile(r"POWER_MODEL:\s*ID=(\d+)\s+NAME=(\S+)")

    def __init__(self):
        self.governor = GovernorControl()
        self._modes = None

    def _tool(self, name):
        path = find_tool(name)
        if path is None:
            raise PowerError("{} is not installed (not on PATH nor in {}); it comes with L4T "
                             "(nvidia-l4t-tools)".format(name, ", ".join(TOOL_DIRS)))
        return path

    def _remedy(self):
        return [p for p in (find_tool("nvpmodel"), find_tool("jetson_clocks")) if p]

    def modes(self):
        """[{"id": 0, "name": "MAXN"}, ...] from ``nvpmodel -p --verbose`` (parses, changes nothing)."""
        if self._modes is None:
            _, out, err = run_tool([self._tool("nvpmodel"), "-p", "--verbose"])
            # NVPM VERB lines go to stdout on some releases and stderr on others.
            self._modes = [{"id": int(m.group(1)), "name": m.group(2)}
                           for m in (self.MODE_LINE.search(line) for line in (out + "\n" + err).splitlines()) if m]
        return self._modes

    def query(self):
        """(id, name) from ``nvpmodel -q``: "NV Power Mode: <name>" then the id on the next line.

        Run unprivileged first: the query works for any user on a real Jetson,
        even though it may add "NVPM ERROR ... : 13" lines about files it cannot open.
        """
        nvpmodel = self._tool("nvpmodel")
        for privileged in (False, True):
            if privileged and not needs_sudo():
                break
            _, out, err = run_tool([nvpmodel, "-q"], privileged=privileged, remedy_commands=self._remedy())
            parsed = self._parse_query(out + "\n" + err)
            if parsed:
                return parsed
        raise PowerError("cannot read the power mode: `nvpmodel -q` printed no 'NV Power Mode' line:\n"
                         + (out + err).strip())

    @staticmethod
    def _parse_query(text):
        lines = [line.strip() for line in text.splitlines()]
        for index, line in enumerate(lines):
            if "NV Power Mode:" in line:
                name = line.split("NV Power Mode:", 1)[1].strip()
                for following in lines[index + 1:]:
                    if following.isdigit():
                        return int(following), name
                    if following:
                        break
        return None

    def current_mode(self):
        mode_id, mode_name = self.query()
        found = governors()
        return {"driver": self.name, "name": mode_name, "nvpmodel": mode_id, "jetson_clocks": clocks_pinned(),
                "governor": _one_governor(found), "governors": found}

    def resolve(self, spec):
        """The nvpmodel id a spec asks for: its ``nvpmodel``, else the mode named like the spec."""
        wanted = spec.get("nvpmodel")
        modes = self.modes()
        listing = ", ".join("{} ({})".format(m["id"], m["name"]) for m in modes) or "none listed"
        if wanted is None:
            named = [m["id"] for m in modes if m["name"].lower() == str(spec.get("name", "")).lower()]
            if not named:
                return None
            wanted = named[0]
        if modes and wanted not in [m["id"] for m in modes]:
            raise PowerError("power mode '{}' asks for nvpmodel mode {}, which this board does not have; "
                             "its modes are: {}".format(spec.get("name"), wanted, listing))
        return wanted

    def save(self, state_dir):
        """Record the mode and store the clocks with ``jetson_clocks --store`` before any change."""
        saved = self.current_mode()
        saved["clocks_file"] = None
        jetson_clocks = find_tool("jetson_clocks")
        if jetson_clocks:
            clocks_file = os.path.join(state_dir, "jetson_clocks-{}.conf".format(_root_tag()))
            _remove(clocks_file)  # --store asks before overwriting; with stdin at EOF it would refuse
            code, out, err = run_tool([jetson_clocks, "--store", clocks_file], privileged=True,
                                      remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("`jetson_clocks --store {}` failed: {}".format(clocks_file, (out + err).strip()))
            saved["clocks_file"] = clocks_file
        return saved

    def check(self, spec):
        """Refuse a spec this board cannot take before anything is recorded or changed."""
        target = self.resolve(spec)
        if target is None and spec.get("jetson_clocks") is None and not spec.get("governor"):
            raise PowerError("power mode '{}' names no nvpmodel mode, jetson_clocks or governor, and no nvpmodel "
                             "mode is called that; this board's modes are: {}".format(
                                 spec.get("name"), ", ".join("{} ({})".format(m["id"], m["name"])
                                                             for m in self.modes())))
        return target

    def set_mode(self, spec):
        target = self.check(spec)
        current_id = self.query()[0]
        # Applying an nvpmodel mode rewrites every clock's min and max, which is
        # also how jetson_clocks' pinned minimums get undone.
        unpin = spec.get("jetson_clocks") is False and clocks_pinned()
        if target is not None and (target != current_id or unpin):
            self.set_nvpmodel(target)
        elif unpin:
            self.set_nvpmodel(current_id)
        if spec.get("jetson_clocks"):
            code, out, err = run_tool([self._tool("jetson_clocks")], privileged=True, remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("jetson_clocks failed: {}".format((out + err).strip()))
        if spec.get("governor"):
            self.governor.set_all(spec["governor"])

    def set_nvpmodel(self, mode_id):
        code, out, err = run_tool([self._tool("nvpmodel"), "-m", str(mode_id)], privileged=True,
                                  remedy_commands=self._remedy())
        text = (out + "\n" + err).strip()
        if code != 0 or "NVPM ERROR" in text:
            hint = ""
            if "reboot" in text.lower():
                hint = " (this mode needs a reboot on this Jetson; farm does not reboot boards)"
            raise PowerError("`nvpmodel -m {}` failed{}: {}".format(mode_id, hint, text))

    def verify(self, spec):
        measured = _measure(self.current_mode())
        target = self.resolve(spec)
        if target is not None and measured["nvpmodel"] != target:
            measured["mismatches"].append("nvpmodel reports mode {} ({}), not {}".format(
                measured["nvpmodel"], measured["name"], target))
        if spec.get("jetson_clocks") is not None and measured["jetson_clocks"] != spec["jetson_clocks"]:
            measured["mismatches"].append("jetson_clocks is {}, expected {}".format(
                "on" if measured["jetson_clocks"] else "off", "on" if spec["jetson_clocks"] else "off"))
        if spec.get("governor"):
            wrong = sorted(cpu for cpu, value in measured["governors"].items() if value != spec["governor"])
            if wrong:
                measured["mismatches"].append("governor of CPU(s) {} is not {}".format(", ".join(wrong),
                                                                                       spec["governor"]))
        measured["ok"] = not measured["mismatches"]
        return measured

    def restore(self, saved):
        if self.query()[0] != saved["nvpmodel"]:
            self.set_nvpmodel(saved["nvpmodel"])
        clocks_file = saved.get("clocks_file")
        if clocks_file and os.path.exists(clocks_file):
            code, out, err = run_tool([self._tool("jetson_clocks"), "--restore", clocks_file], privileged=True,
                                      remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("`jetson_clocks --restore {}` failed: {}".format(clocks_file, (out + err).strip()))
        self.governor.restore(saved.get("governors"))
        now = self.current_mode()
        if now["nvpmodel"] != saved["nvpmodel"] or now["jetson_clocks"] != saved["jetson_clocks"]:
            raise PowerError("the board did not return to its mode: it is at {} ({}) with jetson_clocks {}, "
                             "it was at {} ({}) with jetson_clocks {}".format(
                                 now["nvpmodel"], now["name"], _on_off(now["jetson_clocks"]),
                                 saved["nvpmodel"], saved["name"], _on_off(saved["jetson_clocks"])))
        if clocks_file:
            _remove(clocks_file)


class NoPowerControl(object):
    """A board with neither nvpmodel nor cpufreq: it can only run jobs that leave power alone."""

    name = "none"

    def current_mode(self):
        return {"driver": self.name, "name": None}

    def _refuse(self, spec):
        raise PowerError("power mode '{}' cannot be set: this board ({}) has neither nvpmodel nor a cpufreq "
                         "governor under {}".format(spec.get("name"), detect_board() or "unknown board",
                                                    root_path("sys/devices/system/cpu")))

    def check(self, spec):
        self._refuse(spec)

    def save(self, state_dir):
        return self.current_mode()

    def set_mode(self, spec):
        self._refuse(spec)

    def verify(self, spec):
        self._refuse(spec)

    def restore(self, saved):
        return None


def _on_off(flag):
    return "on" if flag else "off"


def _measure(mode):
    measured = dict(mode)
    measured["cpus_online"] = cpus_online()
    measured["cpu_max_freq_khz"] = cpu_max_freqs()
    measured["mismatches"] = []
    return measured


DRIVERS = {"nvpmodel": JetsonDriver, "governor": GovernorDriver, "none": NoPowerControl}


def driver_for(facts_or_board=None):
    """The driver for a board: a facts dict, a board name ("jetson-nano", "Raspberry Pi 4 ..."), or None.

    The board name decides when it is known; otherwise the tools and files the
    board has do (nvpmodel on PATH, then cpufreq governors under the device root).
    """
    board = facts_or_board.get("board") if isinstance(facts_or_board, dict) else facts_or_board
    if board is None:
        board = detect_board()
    lowered = (board or "").lower()
    if any(hint in lowered for hint in JETSON_HINTS):
        return JetsonDriver()
    if any(hint in lowered for hint in GOVERNOR_HINTS):
        return GovernorDriver()
    if find_tool("nvpmodel") and read_text("etc/nv_tegra_release") is not None:
        return JetsonDriver()
    if glob.glob(root_path("sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        return GovernorDriver()
    return NoPowerControl()


# --- crash safety: the state file -------------------------------------------------------------

def state_dir():
    """FARM_AGENT_DIR, else the folder the agent's zipapp was deployed to (the host's workdir), else ~/.cache/farm."""
    if os.environ.get(STATE_DIR_ENV):
        return os.environ[STATE_DIR_ENV]
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    # `python -m agent` with the zipapp on PYTHONPATH (a detached job) has argv[0] inside it:
    # .../agent-HASH.pyz/agent/__main__.py. Its state must live where the serve loop's does.
    while program and program != os.path.dirname(program):
        if program.endswith(".pyz") and os.path.isfile(program):
            return os.path.dirname(program)
        program = os.path.dirname(program)
    return os.path.join(os.path.expanduser("~"), ".cache", "farm")


def _root_tag():
    # Simulated boards on one machine share a home directory; each device root gets its own files.
    root = os.path.abspath(device_root())
    return "root" if root == "/" else hashlib.sha1(root.encode("utf-8")).hexdigest()[:12]


def state_path(folder=None):
    name = "power-restore.json" if _root_tag() == "root" else "power-restore-{}.json".format(_root_tag())
    return os.path.join(folder or state_dir(), name)


def _write_state(path, doc, sync_folder=True):
    """Atomic: a reader sees the old file or the whole new one, never half (write, fsync, rename).

    ``sync_folder=False`` leaves the folder's fsync (which makes the rename itself survive a power
    cut) to the caller's ``_sync_folder``, for one that has something more urgent to do first.
    """
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder)
    temporary = "{}.{}.tmp".format(path, os.getpid())
    with open(temporary, "w") as handle:
        json.dump(doc, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, path)
    if sync_folder:
        _sync_folder(folder)


def _sync_folder(folder):
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read_state(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return None


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def _process_start(pid):
    """Start time of a process (clock ticks since boot), so a recycled pid is not mistaken for it."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            text = handle.read()
    except (OSError, IOError):
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its closing parenthesis.
    fields = text.rsplit(")", 1)[-1].split()
    if fields and fields[0] in ("Z", "X"):
        return None  # a zombie runs nothing: a killed job waiting to be reaped by init holds no board
    return fields[19] if len(fields) > 19 else None


def _owner_alive(doc):
    pid = doc.get("pid")
    return bool(pid) and pid != os.getpid() and _process_start(pid) == doc.get("pid_start")


def pending_restore(folder=None, driver=None):
    """Restore a mode that a killed agent left set; call once when the agent starts.

    Returns None when nothing was pending, else a report for facts or a result:
    {"restored": true, "mode": {...the original...}, "requested": {...}, "left_by_pid": 123,
    "left_at": 1700000000.0, "now": {...current mode...}} or, when restoring
    failed or the owner still runs, {"restored": false, "error": "..."}
    (the state file is then kept for the next try).
    """
    path = state_path(folder)
    doc = _read_state(path)
    if doc is None:
        if os.path.exists(path):  # unreadable: a torn write cannot happen, so it was edited by hand
            return {"restored": False, "error": "unreadable power state file {}".format(path)}
        return None
    report = {"mode": doc.get("saved"), "requested": doc.get("requested"),
              "left_by_pid": doc.get("pid"), "left_at": doc.get("created_at"), "state_file": path}
    if _owner_alive(doc):
        report.update(restored=False, error="agent pid {} is still running a job with power mode {}".format(
            doc.get("pid"), (doc.get("requested") or {}).get("name")))
        return report
    saved = doc.get("saved") or {}
    chosen = driver or DRIVERS.get(saved.get("driver"), NoPowerControl)()
    try:
        chosen.restore(saved)
    except PowerError as exc:
        report.update(restored=False, error=str(exc))
        return report
    _remove(path)
    report.update(restored=True, now=chosen.current_mode())
    return report


# --- the context manager a job runs in ----------------------------------------------------------

def _reinstall(previous):
    for number, handler in previous.items():
        # None: the handler was set outside Python and cannot be put back; the default is the safe choice.
        signal.signal(number, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP (a dropped SSH session) become SystemExit, so ``finally`` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = {number: signal.signal(number, _exit) for number in wanted}
    try:
        yield
    finally:
        _reinstall(previous)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGTERM/SIGHUP while restoring (a half-restored board is the worst outcome), then exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {number: signal.signal(number, lambda signum, frame: caught.append(signum)) for number in wanted}
    try:
        yield
    finally:
        _reinstall(previous)
    if caught:
        raise SystemExit(128 + caught[0])


_MEASURED_ONLY = ("cpus_online", "cpu_max_freq_khz", "mismatches", "ok")


def _verified(driver, spec):
    """The board measured against ``spec`` (verify's report), or None when it cannot be read."""
    try:
        return driver.verify(spec)
    except PowerError:
        return None


@contextlib.contextmanager
def applied(spec, driver=None, folder=None):
    """Run a block in power mode ``spec``, then put the board back whatever happens.

    Yields {"requested": spec, "before": {...}, "measured": {...}, "recovered": report-or-None,
    "restore": None}; after the block, "restore" becomes {"ok": true} or
    {"ok": false, "error": "..."} (a failed restore does not hide the block's
    own exception; its state file stays so ``pending_restore`` tries again).
    ``spec`` None leaves the board alone and yields the same keys with None.
    Raises PowerError when the mode cannot be set or does not verify.
    """
    info = {"requested": spec, "before": None, "measured": None, "recovered": None, "restore": None}
    if not spec:
        yield info
        return
    driver = driver or driver_for(None)
    folder = folder or state_dir()
    path = state_path(folder)
    recovered = pending_restore(folder)
    if recovered is not None and not recovered.get("restored"):
        raise PowerError("a previous power mode is still pending: " + recovered.get("error", "unknown"))
    info["recovered"] = recovered
    driver.check(spec)
    already = _verified(driver, spec)
    if already is not None and already["ok"]:
        # Already in the mode: nothing to switch, settle or restore, so no state file and no
        # jetson_clocks --store either. Consecutive jobs in one mode (the scheduler groups them)
        # then cost one query each.
        info.update(switched=False, measured=already, restore={"ok": True, "needed": False},
                    before={k: v for k, v in already.items() if k not in _MEASURED_ONLY})
        yield info
        return
    if not os.path.isdir(folder):
        os.makedirs(folder)
    with _signals_raise():
        saved = driver.save(folder)
        info["before"] = {k: v for k, v in saved.items() if k != "clocks_file"}
        _write_state(path, {"version": 1, "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
                            "created_at": time.time(), "device_root": device_root(),
                            "requested": spec, "saved": saved})
        in_flight = None
        try:
            info["switched"] = True
            driver.set_mode(spec)
            settle = spec.get("settle_seconds")
            time.sleep(DEFAULT_SETTLE_SECONDS if settle is None else max(0.0, float(settle)))
            measured = driver.verify(spec)
            info["measured"] = measured
            if not measured["ok"]:
                raise PowerError("power mode '{}' did not take: {}".format(spec.get("name"),
                                                                          "; ".join(measured["mismatches"])))
            yield info
        except BaseException as exc:
            in_flight = exc
            raise
        finally:
            with _signals_deferred():
                try:
                    driver.restore(saved)
                except Exception as exc:  # noqa: BLE001 - reported, and the state file stays for the next try
                    info["restore"] = {"ok": False, "error": "{}: {}".format(type(exc).__name__, exc)}
                    if isinstance(in_flight, PowerError):
                        # The caller never got ``info``: the restore failure rides on the error it sees.
                        in_flight.message += "\nand restoring the original mode failed: {}".format(exc)
                        in_flight.args = (in_flight.message + ("\n" + in_flight.remedy if in_flight.remedy else ""),)
                else:
                    info["restore"] = {"ok": True}
                    _remove(path)


# --- module-level shortcuts for the detected board -----------------------------------------------

def describe(board=None):
    """Power facts that never raise: {"driver": "nvpmodel", "current": {...current_mode...},
    "modes": [{"id": 0, "name": "MAXN"}, ...], "governors": ["ondemand", ...], "error": null}."""
    driver = driver_for(board)
    out = {"driver": driver.name, "current": None, "modes": [], "governors": GovernorControl().available(),
           "error": None}
    try:
        out["current"] = driver.current_mode()
        if isinstance(driver, JetsonDriver):
            out["modes"] = driver.modes()
    except PowerError as exc:
        out["error"] = str(exc)
    return out


def current_mode():
    return driver_for(None).current_mode()


def set_mode(spec):
    """Set a mode without recording it for restore; most callers want ``applied``."""
    driver_for(None).set_mode(spec)


def verify(spec):
    return driver_for(None).verify(spec)


def restore(saved):
    DRIVERS.get(saved.get("driver"), NoPowerControl)().restore(saved)
