"""Hardware files, read below the device root so that a simulated board answers through the same code.

``FARM_DEVICE_ROOT`` (default ``/``) is where the board's ``/sys``, ``/proc`` and
``/etc`` are; a simulated host points it at a directory laid out like a real board's.
"""

import os

DEVICE_ROOT_ENV = "FARM_DEVICE_ROOT"
CPU_DIR = "sys/devices/system/cpu"


def device_root():
    return os.environ.get(DEVICE_ROOT_ENV) or "/"


def root_path(*parts):
    return os.path.join(device_root(), *[p.lstrip("/") for p in parts])


def read_text(*parts):
    """Contents of a file under the device root, or None when it is absent."""
    try:
        with open(root_path(*parts), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (OSError, IOError):
        return None


def read_stripped(path):
    """A file by its path on this machine (already under the device root), stripped, or None."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, IOError):
        return None


def int_or_none(text):
    try:
        return int(str(text).strip()) if text is not None else None
    except (TypeError, ValueError):
        return None


def device_tree_model():
    """/proc/device-tree/model without its NUL, or None."""
    model = read_text("proc/device-tree/model")
    return (model.replace("\x00", "").strip() or None) if model else None


def device_tree_compatible():
    """The NUL-separated /proc/device-tree/compatible strings, e.g. ["raspberrypi,4-model-b", "brcm,bcm2711"]."""
    return [part for part in (read_text("proc/device-tree/compatible") or "").split("\x00") if part.strip()]


def parse_cpu_list(text):
    """Parse the kernel's CPU list format, e.g. '0-3' or '0,2-3'."""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.extend(range(int(low), int(high) + 1))
        else:
            cpus.append(int(part))
    return cpus


def cpus_online():
    """The online CPUs the kernel lists, [] when it lists none (power control then has nothing to act on)."""
    text = read_text(CPU_DIR + "/online")
    try:
        return parse_cpu_list(text) if text and text.strip() else []
    except ValueError:
        return []


def cpufreq_path(cpu, name):
    return root_path("{}/cpu{}/cpufreq/{}".format(CPU_DIR, cpu, name))


def cpufreq(cpu, name):
    text = read_text("{}/cpu{}/cpufreq/{}".format(CPU_DIR, cpu, name))
    return text.strip() if text is not None else None


def cpu_max_freqs():
    """scaling_max_freq in kHz per online CPU, keyed by CPU number as a string (JSON keys)."""
    return {str(cpu): int_or_none(cpufreq(cpu, "scaling_max_freq")) for cpu in cpus_online()}


def governors():
    """The cpufreq governor of each online CPU that has cpufreq."""
    found = {}
    for cpu in cpus_online():
        value = cpufreq(cpu, "scaling_governor")
        if value:
            found[str(cpu)] = value
    return found


def find(pattern, _folders_only=False):
    """What ``glob.glob(pattern)`` finds, for patterns whose one wildcard is ``*``: in the same order, hidden
    names left out the same way, no name starting with a dot matched.

    Without glob: importing it and fnmatch, then compiling every pattern to a regular expression, was a
    millisecond of every contact on a PC (a board's facts glob for thermal zones, power monitors, governors).
    """
    folder, name = os.path.split(pattern)
    if "*" not in pattern:
        return [pattern] if (os.path.lexists(pattern) if name else os.path.isdir(folder)) else []
    parents = find(folder, True) if "*" in folder else [folder]
    found = []
    for parent in parents:
        if "*" not in name:
            if os.path.lexists(os.path.join(parent, name)):
                found.append(os.path.join(parent, name))
            continue
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for entry in names:
            path = os.path.join(parent, entry)
            if (not entry.startswith(".") and _matches(entry, name)
                    and (not _folders_only or os.path.isdir(path))):
                found.append(path)
    return found


def _matches(name, pattern):
    """fnmatch for a pattern whose only wildcard is ``*`` (on POSIX: case matters)."""
    pieces = pattern.split("*")
    head, tail = pieces[0], pieces[-1]
    if len(name) < len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
        return False
    at, end = len(head), len(name) - len(tail)
    for piece in pieces[1:-1]:
        at = name.find(piece, at, end)
        if at < 0:
            return False
        at += len(piece)
    return True
