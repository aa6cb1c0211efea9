"""What a device is: read through a device root so a simulated board can stand in.

Everything hardware-specific is read below ``FARM_DEVICE_ROOT`` (default ``/``);
a simulated host points it at a directory laid out like a Jetson or a Pi.
"""

import os
import platform
import re
import socket
import sys

from . import __version__
from .runtime import describe_runtime

DEVICE_ROOT_ENV = "FARM_DEVICE_ROOT"


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
    """Board name from the device tree or the L4T release file, else None."""
    model = read_text("proc/device-tree/model")
    if model:
        return model.replace("\x00", "").strip() or None
    tegra = read_text("etc/nv_tegra_release")
    if tegra:
        return "NVIDIA Jetson (" + tegra.splitlines()[0].strip("# ").strip() + ")"
    return None


def l4t_release():
    """'32.7.1' from /etc/nv_tegra_release ('# R32 (release), REVISION: 7.1, ...'), else None.

    Results keep it so that numbers measured under different JetPacks are never mixed up unnoticed.
    """
    first = (read_text("etc/nv_tegra_release") or "").splitlines()[:1]
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", first[0]) if first else None
    if not match:
        return None
    release = "{}.{}".format(match.group(1), match.group(2))
    return release if release.count(".") >= 2 else release + ".0"


def kernel_release():
    text = read_text("proc/sys/kernel/osrelease")
    if text and device_root() != "/":
        return text.strip()
    return platform.release()


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
    return {
        "agent_version": __version__,
        "hostname": socket.gethostname(),
        "arch": platform.machine(),
        "cpus_online": online,
        "cpu_count": len(online),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "runtime": describe_runtime(),
        "os": os_release(),
        "kernel": kernel_release(),
        "l4t": l4t_release(),
        "board": detect_board(),
        "memory_kib": memory_total_kib(),
        "device_root": device_root(),
    }
