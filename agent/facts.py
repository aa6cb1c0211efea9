"""What a device is: read through a device root so a simulated board can stand in.

Everything hardware-specific is read below ``FARM_DEVICE_ROOT`` (default ``/``,
see ``sysfs``); the board's name and its family's release come from ``boards``.
"""

import os
import sys

from . import __version__, backends, boards
from .backends.tflite_loader import describe_runtime
from .sysfs import DEVICE_ROOT_ENV, device_root, parse_cpu_list, read_text, root_path

# Kept importable from here: edgetpu and the lab read the device root through these names.
__all__ = ["DEVICE_ROOT_ENV", "cpus_online", "detect_board", "device_root", "gather", "kernel_release",
           "l4t_release", "memory_total_kib", "os_release", "parse_cpu_list", "read_text", "root_path"]

def cpus_online():
    """The online CPUs, else as many as Python counts: facts always name at least one."""
    text = read_text("sys/devices/system/cpu/online")
    if text and text.strip():
        try:
            return parse_cpu_list(text)
        except ValueError:
            pass
    return list(range(os.cpu_count() or 1))


def os_release():
    text = read_text("etc/os-release") or ""
    fields = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip().strip('"')
    return fields.get("PRETTY_NAME") or fields.get("NAME")


def detect_board():
    """Board name from the device tree or the board family's own files, else None."""
    return boards.detect_board()


def l4t_release():
    """The L4T release of a board that has one ('32.7.1'), else None.

    Results keep it so that numbers measured under different releases are never mixed up unnoticed.
    """
    return boards.l4t_release()


def kernel_release():
    # os.uname() is what platform.release() reads (importing platform was a tenth of the facts' imports).
    if device_root() == "/":
        return os.uname()[2]
    text = read_text("proc/sys/kernel/osrelease")
    return text.strip() if text else os.uname()[2]


# sys.implementation.name -> what platform.python_implementation() says
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython", "jython": "Jython"}


def python_version():
    """platform.python_version(): the first word of sys.version, '3.12' made '3.12.0'."""
    version = sys.version.split()[0]
    return version + ".0" if version.count(".") == 1 else version


def python_implementation():
    name = _IMPLEMENTATIONS.get(sys.implementation.name)
    if name is not None:
        return name
    import platform  # only for an interpreter the table does not know

    return platform.python_implementation()


def memory_total_kib():
    for line in (read_text("proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def gather():
    """The facts document the agent prints for ``facts``."""
    online = cpus_online()
    runtime = describe_runtime()
    return {
        "agent_version": __version__,
        "hostname": os.uname()[1],  # what socket.gethostname() returns on Linux, without importing socket
        "arch": os.uname()[4],  # platform.machine() on Linux
        "cpus_online": online,
        "cpu_count": len(online),
        "python": {
            "version": python_version(),
            "implementation": python_implementation(),
            "executable": sys.executable,
        },
        "runtime": runtime,
        # Every inference backend this agent has, with its runtime's version or what the host would need;
        # TFLite's is the runtime just described (asking twice looked for every candidate module twice).
        "backends": backends.available(known={"tflite": dict(runtime)}),
        "os": os_release(),
        "kernel": kernel_release(),
        "l4t": l4t_release(),
        "board": detect_board(),
        "gpu": boards.gpu(),
        "memory_kib": memory_total_kib(),
        "device_root": device_root(),
    }
