"""What the kernel does when a stand-in tool writes a sysfs file under the device root.

Shared by the stand-in ``nvpmodel`` and ``jetson_clocks`` (scripts in this
directory import it as a sibling). Standard library only, Python 3.6+: the
stand-ins run under whatever ``python3`` a simulated board has.

A real sysfs write has side effects the plain file system lacks: taking a CPU
offline rewrites ``/sys/devices/system/cpu/online``; a cpufreq limit applies to
every CPU of the policy and drags the current frequency inside the limits. This
module does those, and rewrites the simulated INA3221 rails for the power mode
(see ``refresh_power``).
"""

import json
import os
import re
import sys

CPU_DIR = "/sys/devices/system/cpu"
CPU_ONLINE = re.compile(r"^/sys/devices/system/cpu/cpu(\d+)/online$")
CPUFREQ_LIMIT = re.compile(r"^/sys/devices/system/cpu/cpu(\d+)/cpufreq/scaling_(min|max)_freq$")
DEVFREQ_LIMIT = re.compile(r"^(/sys/.+/devfreq/[^/]+)/(min|max)_freq$")
NVPMODEL_STATUS = "/var/lib/nvpmodel/status"
# Written by farm_lab.hardware.install_ina3221: rails, their files, and mW per power mode.
POWER_MODEL = "/var/lib/farm-lab/power-model.json"


def device_root():
    """The simulated board's root; a stand-in never acts on this machine's own /sys."""
    root = os.environ.get("FARM_DEVICE_ROOT") or "/"
    if os.path.abspath(root) == "/":
        # The lab's native front execs this script as TOOL.py beside it; the message names the tool.
        tool = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        sys.stderr.write(f"{tool}: FARM_DEVICE_ROOT names no simulated board; this stand-in only acts on one\n")
        sys.exit(2)
    return root


def host_path(path):
    """Where a board path (``/sys/...``) lives on this machine."""
    return os.path.join(device_root(), path.lstrip("/"))


def read(path, default=None):
    try:
        with open(host_path(path)) as handle:
            return handle.read().strip()
    except OSError:
        return default


def read_int(path, default=None):
    try:
        return int(read(path))
    except (TypeError, ValueError):
        return default


def write_raw(path, value):
    """Replace the file whole, so a reader polling it never sees it half written."""
    target = host_path(path)
    if not os.path.exists(target):
        # sysfs has no file to create: writing a missing attribute is ENOENT, as on a board.
        raise OSError(2, "No such file or directory", path)
    temporary = f"{target}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(f"{value}\n")
    os.rename(temporary, target)


def parse_cpus(text):
    cpus = []
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            low, _, high = part.partition("-")
            cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def format_cpus(cpus):
    """The kernel's list format: [0, 1, 3] -> "0-1,3"."""
    parts, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [cpu]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def all_cpus():
    return parse_cpus(read(CPU_DIR + "/possible") or read(CPU_DIR + "/present") or read(CPU_DIR + "/online"))


def online_cpus():
    return parse_cpus(read(CPU_DIR + "/online"))


def write(path, value):
    """Write a sysfs attribute with the kernel's side effects; OSError as the kernel would fail it."""
    match = CPU_ONLINE.match(path)
    if match:
        return _set_online(int(match.group(1)), str(value).strip())
    match = CPUFREQ_LIMIT.match(path)
    if match:
        return _set_cpufreq_limit(int(match.group(1)), match.group(2), int(value))
    match = DEVFREQ_LIMIT.match(path)
    if match:
        table = [int(v) for v in (read(match.group(1) + "/available_frequencies") or "").split()]
        write_raw(path, max(min(table), min(max(table), int(value))) if table else value)
        # The GPU's devfreq governor (nvhost_podgov) raises the clock to its cap under a benchmark's load.
        return _clamp_current(match.group(1) + "/min_freq", match.group(1) + "/max_freq",
                              match.group(1) + "/cur_freq", read(match.group(1) + "/governor", "nvhost_podgov"))
    return write_raw(path, value)


def _set_online(cpu, value):
    if value not in ("0", "1"):
        raise OSError(22, "Invalid argument", f"cpu{cpu}/online")
    write_raw(f"{CPU_DIR}/cpu{cpu}/online", value)
    online = set(online_cpus())
    if value == "1":
        online.add(cpu)
    else:
        online.discard(cpu)
    write_raw(CPU_DIR + "/online", format_cpus(online))


def _policy_cpus(cpu):
    # CPUs of one cluster share a cpufreq policy: a limit written through any of them binds all.
    related = read(f"{CPU_DIR}/cpu{cpu}/cpufreq/related_cpus")
    return [int(c) for c in related.split()] if related else [cpu]


def _set_cpufreq_limit(cpu, which, khz):
    base = f"{CPU_DIR}/cpu{cpu}/cpufreq/"
    low = read_int(base + "cpuinfo_min_freq", khz)
    high = read_int(base + "cpuinfo_max_freq", khz)
    khz = max(low, min(high, khz))
    for member in _policy_cpus(cpu):
        folder = f"{CPU_DIR}/cpu{member}/cpufreq/"
        if read(folder + "scaling_max_freq") is None:
            continue
        write_raw(folder + f"scaling_{which}_freq", khz)
        # The kernel keeps min <= max: the limit just written wins.
        other_min, other_max = read_int(folder + "scaling_min_freq"), read_int(folder + "scaling_max_freq")
        if other_min is not None and other_max is not None and other_min > other_max:
            write_raw(folder + ("scaling_max_freq" if which == "min" else "scaling_min_freq"), khz)
        _clamp_current(folder + "scaling_min_freq", folder + "scaling_max_freq", folder + "scaling_cur_freq",
                       read(folder + "scaling_governor"))


def _clamp_current(min_path, max_path, cur_path, governor):
    low, high, current = read_int(min_path), read_int(max_path), read_int(cur_path)
    if low is None or high is None or current is None:
        return
    if governor == "powersave":
        current = low
    elif governor is not None:
        # performance, and a dynamic governor (schedutil, ondemand) while a benchmark loads the
        # board: a simulated board is always "under load", so it runs at its limit.
        current = high
    write_raw(cur_path, max(low, min(high, current)))


def nvpmodel_mode(default=None):
    """The mode id in nvpmodel's status file ("pmode:0001 fmode:quiet")."""
    match = re.search(r"pmode:(\d+)", read(NVPMODEL_STATUS) or "")
    return int(match.group(1)) if match else default


def clocks_pinned():
    pinned = []
    for cpu in online_cpus():
        folder = f"{CPU_DIR}/cpu{cpu}/cpufreq/"
        low, high = read_int(folder + "scaling_min_freq"), read_int(folder + "scaling_max_freq")
        if low is not None and high is not None:
            pinned.append(low == high)
    return bool(pinned) and all(pinned)


def rail_readings(model, mode, pinned, load):
    """{rail name: (mW, mV, mA)} for a power mode, jetson_clocks state and load (0..1)."""
    readings = {}
    for rail in model.get("rails", []):
        key = str(mode)
        milliwatts = rail["base_mw"].get(key, 0) + load * rail.get("load_mw", {}).get(key, 0)
        if pinned:
            milliwatts += rail.get("clocks_mw", 0)
        millivolts = rail["millivolts"]
        readings[rail["name"]] = (round(milliwatts), millivolts, round(milliwatts * 1000.0 / millivolts))
    return readings


def refresh_power():
    """Rewrite the simulated rails for the current nvpmodel mode; nothing when the board has none.

    The stand-ins call this after changing the mode or the clocks, so a board at
    5W reads less power than at MAXN. Readings that also move with load come
    from ``farm_lab.hardware.PowerUpdater``, which rewrites the same files.
    """
    text = read(POWER_MODEL)
    if not text:
        return
    model = json.loads(text)
    readings = rail_readings(model, nvpmodel_mode(model.get("default_mode", 0)), clocks_pinned(),
                             float(model.get("load", 0.0)))
    for rail in model.get("rails", []):
        milliwatts, millivolts, milliamps = readings[rail["name"]]
        files = rail["files"]
        for kind, value in (("power", milliwatts), ("voltage", millivolts), ("current", milliamps)):
            if files.get(kind):
                write_raw(files[kind], value)
