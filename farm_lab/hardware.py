"""Hardware a simulated board's device root needs for power modes, Edge TPUs and conditions.

Each ``install_*`` adds one layer to a device root (a directory laid out like
the board's ``/``) and may run after ``boards.write_device_root``: it rewrites
the files it owns and leaves identity files (device-tree model, os-release)
alone when they exist. The agent reads these files, and the stand-in tools in
``standins/`` (put that directory first on the agent's PATH) change them the
way the real tools change a real board.

Power readings: ``install_ina3221`` writes the rails and a power model
(``/var/lib/farm-lab/power-model.json``: mW per rail and nvpmodel mode, plus
what load and jetson_clocks add). The stand-in nvpmodel and jetson_clocks
rewrite the rails for the new mode, so readings are static per mode. For
readings that move while a benchmark runs, start a ``PowerUpdater``: a thread
that rewrites the rail files every 50 ms from the same model, with the load
taken from this machine's real CPU use (``/proc/stat``), which is where the
simulated board's benchmark actually runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from typing_extensions import Self

STANDINS = Path(__file__).resolve().parent / "standins"
POWER_MODEL = "var/lib/farm-lab/power-model.json"
THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"

# L4T's tegra210 CPU table on the Nano: 918000 is a table entry, the 5W mode's cap.
NANO_CPU_KHZ = (102000, 204000, 307200, 403200, 518400, 614400, 710400, 825600, 918000, 1036800, 1132800,
                1224000, 1326000, 1428000, 1479000)
NANO_GPU_HZ = (76800000, 153600000, 230400000, 307200000, 384000000, 460800000, 537600000, 614400000,
               640000000, 691200000, 768000000, 844800000, 921600000)
NANO_GOVERNORS = ("interactive", "conservative", "ondemand", "userspace", "powersave", "performance", "schedutil")
LINUX_GOVERNORS = ("conservative", "ondemand", "userspace", "powersave", "performance", "schedutil")
NANO_THERMAL = (("AO-therm", 40.5), ("CPU-therm", 37.5), ("GPU-therm", 36.5), ("PLL-therm", 35.0),
                ("PMIC-Die", 100.0), ("thermal-fan-est", 37.0))

# A Jetson Nano's /etc/nvpmodel.conf (L4T R32 nvpmodel_t210_jetson-nano.conf, abridged to what it sets).
NANO_NVPMODEL_CONF = """\
# Jetson Nano power modes: MAXN (the 10 W budget) and 5W.
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
CORE_1 /sys/devices/system/cpu/cpu1/online
CORE_2 /sys/devices/system/cpu/cpu2/online
CORE_3 /sys/devices/system/cpu/cpu3/online

< PARAM TYPE=FILE NAME=GPU_POWER_CONTROL_ENABLE >
GPU_PWR_CNTL_EN /sys/devices/gpu.0/power/control

< PARAM TYPE=FILE NAME=GPU_POWER_CONTROL_DISABLE >
GPU_PWR_CNTL_DIS /sys/devices/gpu.0/power/control

< PARAM TYPE=CLOCK NAME=CPU_A57 >
FREQ_TABLE /sys/devices/system/cpu/cpu0/cpufreq/scaling_available_frequencies
MAX_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq
MIN_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq

< PARAM TYPE=CLOCK NAME=GPU >
FREQ_TABLE /sys/devices/gpu.0/devfreq/57000000.gpu/available_frequencies
MAX_FREQ /sys/devices/gpu.0/devfreq/57000000.gpu/max_freq
MIN_FREQ /sys/devices/gpu.0/devfreq/57000000.gpu/min_freq

< PARAM TYPE=CLOCK NAME=EMC >
MAX_FREQ /sys/kernel/nvpmodel_emc_cap/emc_iso_cap

< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 1
CPU_ONLINE CORE_2 1
CPU_ONLINE CORE_3 1
CPU_A57 MIN_FREQ 0
CPU_A57 MAX_FREQ 1479000
GPU_POWER_CONTROL_ENABLE GPU_PWR_CNTL_EN on
GPU MIN_FREQ 0
GPU MAX_FREQ -1
GPU_POWER_CONTROL_DISABLE GPU_PWR_CNTL_DIS auto
EMC MAX_FREQ 0

< POWER_MODEL ID=1 NAME=5W >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 1
CPU_ONLINE CORE_2 0
CPU_ONLINE CORE_3 0
CPU_A57 MIN_FREQ 0
CPU_A57 MAX_FREQ 918000
GPU_POWER_CONTROL_ENABLE GPU_PWR_CNTL_EN on
GPU MIN_FREQ 0
GPU MAX_FREQ 640000000
GPU_POWER_CONTROL_DISABLE GPU_PWR_CNTL_DIS auto
EMC MAX_FREQ 1600000000

< PM_CONFIG DEFAULT=0 >
"""

RPI_MODELS = {
    "3B": ("Raspberry Pi 3 Model B Rev 1.2", ("raspberrypi,3-model-b", "brcm,bcm2837"), (600000, 1200000)),
    "3B+": ("Raspberry Pi 3 Model B Plus Rev 1.3", ("raspberrypi,3-model-b-plus", "brcm,bcm2837"),
            (600000, 1400000)),
    "4B": ("Raspberry Pi 4 Model B Rev 1.4", ("raspberrypi,4-model-b", "brcm,bcm2711"),
           (600000, 700000, 800000, 900000, 1000000, 1100000, 1200000, 1300000, 1400000, 1500000)),
}

# Rails as each JetPack's driver names them, with mW per nvpmodel mode: at rest, added at full CPU
# load, and added by jetson_clocks. Nano figures are typical for its 5 V barrel-jack supply.
NANO_RAILS = (
    {"name": "POM_5V_IN", "millivolts": 5080, "base_mw": {"0": 1900, "1": 1600},
     "load_mw": {"0": 3000, "1": 1400}, "clocks_mw": 500},
    {"name": "POM_5V_GPU", "millivolts": 5000, "base_mw": {"0": 40, "1": 40},
     "load_mw": {"0": 80, "1": 40}, "clocks_mw": 200},
    {"name": "POM_5V_CPU", "millivolts": 5000, "base_mw": {"0": 400, "1": 300},
     "load_mw": {"0": 2300, "1": 900}, "clocks_mw": 300},
)
ORIN_RAILS = (
    {"name": "VDD_IN", "millivolts": 5000, "base_mw": {"0": 4200, "1": 3600},
     "load_mw": {"0": 6000, "1": 2800}, "clocks_mw": 800},
    {"name": "VDD_CPU_GPU_CV", "millivolts": 5000, "base_mw": {"0": 500, "1": 400},
     "load_mw": {"0": 3500, "1": 1500}, "clocks_mw": 400},
    {"name": "VDD_SOC", "millivolts": 5000, "base_mw": {"0": 1300, "1": 1100},
     "load_mw": {"0": 600, "1": 300}, "clocks_mw": 200},
)

EDGETPU_IDS = {"app": ("18d1", "9302", "Google Inc.", ""), "dfu": ("1a6e", "089a", "Global Unichip Corp.", "")}
HUB_ID = ("05e3", "0610", "GenesysLogic", "USB2.0 Hub")
# The host controller the simulated buses hang off, as on an x86 PC's PCI xHCI.
USB_CONTROLLER = "sys/devices/pci0000:00/0000:00:14.0"


def standins_dir() -> Path:
    """The directory holding the stand-in nvpmodel, jetson_clocks and vcgencmd: prepend it to PATH."""
    return STANDINS


# --- small file helpers ------------------------------------------------------------------------------

def _write(root: Path, relative: str, content: str | float) -> Path:
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else f"{content}\n"
    path.write_text(text, encoding="utf-8")
    return path


def _write_if_absent(root: Path, relative: str, content: str) -> None:
    if not (Path(root) / relative).exists():
        _write(root, relative, content)


def _replace_with_link(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs has, replacing whatever stood at ``link``."""
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _identity(root: Path, model: str, compatible: Sequence[str]) -> None:
    # Device-tree strings end with NUL bytes, as the kernel exposes them.
    _write_if_absent(root, "proc/device-tree/model", model + "\0")
    _write_if_absent(root, "proc/device-tree/compatible", "".join(c + "\0" for c in compatible))


def _cpus(root: Path, count: int, frequencies: Sequence[int], governors: Sequence[str], governor: str) -> None:
    """``count`` CPUs in one cpufreq policy (one cluster, as on all these boards), all online."""
    listing = f"0-{count - 1}"
    for name in ("online", "possible", "present"):
        _write(root, f"sys/devices/system/cpu/{name}", listing + "\n")
    low, high = min(frequencies), max(frequencies)
    current = {"performance": high, "powersave": low}.get(governor, low)
    related = " ".join(str(cpu) for cpu in range(count))
    for cpu in range(count):
        base = f"sys/devices/system/cpu/cpu{cpu}/"
        _write(root, base + "online", 1)
        for name, value in (("scaling_governor", governor), ("scaling_available_governors", " ".join(governors)),
                            ("scaling_available_frequencies", " ".join(map(str, frequencies))),
                            ("scaling_min_freq", low), ("scaling_max_freq", high), ("scaling_cur_freq", current),
                            ("cpuinfo_min_freq", low), ("cpuinfo_max_freq", high), ("related_cpus", related),
                            ("affected_cpus", related)):
            _write(root, base + "cpufreq/" + name, value if isinstance(value, int) else f"{value}\n")


# --- boards ----------------------------------------------------------------------------------------------

def install_jetson_nano(root: Path | str, mode: int = 0) -> None:
    """A Jetson Nano's power hardware: 4 A57 CPUs, GPU and EMC clocks, idle states, fan, nvpmodel.conf.

    ``mode`` is the nvpmodel mode the board is left in (0 MAXN, 1 5W), set with the stand-in nvpmodel.
    """
    root = Path(root)
    _identity(root, "NVIDIA Jetson Nano Developer Kit", ("nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"))
    _write_if_absent(root, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, "
                     "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    _cpus(root, 4, NANO_CPU_KHZ, NANO_GOVERNORS, "schedutil")
    for cpu in range(4):
        for index, name in enumerate(("WFI", "c7")):
            _write(root, f"sys/devices/system/cpu/cpu{cpu}/cpuidle/state{index}/name", name + "\n")
            _write(root, f"sys/devices/system/cpu/cpu{cpu}/cpuidle/state{index}/disable", 0)
    gpu = "sys/devices/57000000.gpu/"
    for name, value in (("available_frequencies", " ".join(map(str, NANO_GPU_HZ))),
                        ("min_freq", min(NANO_GPU_HZ)), ("max_freq", max(NANO_GPU_HZ)),
                        ("cur_freq", min(NANO_GPU_HZ)), ("governor", "nvhost_podgov")):
        _write(root, gpu + "devfreq/57000000.gpu/" + name, value if isinstance(value, int) else value + "\n")
    _write(root, gpu + "railgate_enable", 1)
    _write(root, gpu + "power/control", "auto\n")
    _write(root, gpu + "load", 0)  # tenths of a percent, as nvgpu reports it
    _replace_with_link(root / "sys/devices/gpu.0", root / gpu)  # L4T's alias for the GPU device
    _replace_with_link(root / "sys/class/devfreq/57000000.gpu", root / gpu / "devfreq/57000000.gpu")
    # The GM20B's device-tree node, as L4T R32's tegra210 device tree has it.
    _write_if_absent(root, "proc/device-tree/gpu@57000000/compatible", "nvidia,tegra210-gm20b\0nvidia,gm20b\0")
    _write_if_absent(root, "proc/device-tree/gpu@57000000/status", "okay\0")
    for relative, value in (("sys/kernel/nvpmodel_emc_cap/emc_iso_cap", 0),
                            ("sys/kernel/debug/tegra_bwmgr/emc_min_rate", 204000000),
                            ("sys/kernel/debug/tegra_bwmgr/emc_max_rate", 1600000000),
                            ("sys/kernel/debug/clk/override.emc/clk_rate", 1600000000),
                            ("sys/kernel/debug/clk/override.emc/clk_update_rate", 0),
                            ("sys/kernel/debug/clk/override.emc/clk_state", 0),
                            ("sys/devices/pwm-fan/target_pwm", 0), ("sys/devices/pwm-fan/temp_control", 1)):
        _write(root, relative, value)
    _write(root, "etc/nvpmodel.conf", NANO_NVPMODEL_CONF)
    _write(root, "var/lib/nvpmodel/status", "pmode:0000\n")
    if not list(_thermal_zones(root)):
        install_thermal(root, NANO_THERMAL)
    if mode != 0:
        run_standin(root, "nvpmodel", "-m", str(mode))


def install_rpi(root: Path | str, model: str = "4B") -> None:
    """A Raspberry Pi ("3B", "3B+" or "4B"): 4 CPUs on the ondemand governor, vcgencmd's throttle flags."""
    if model not in RPI_MODELS:
        raise ValueError(f"unknown Raspberry Pi model {model!r}; known: {', '.join(RPI_MODELS)}")
    root = Path(root)
    name, compatible, frequencies = RPI_MODELS[model]
    _identity(root, name, compatible)
    _cpus(root, 4, frequencies, LINUX_GOVERNORS, "ondemand")
    install_throttled(root, 0)
    if not list(_thermal_zones(root)):
        install_thermal(root, (("cpu-thermal", 47.2),))


def install_devboard(root: Path | str) -> None:
    """A Coral Dev Board: i.MX 8M with 4 A53 CPUs (ondemand) and its PCIe Edge TPU at /dev/apex_0."""
    root = Path(root)
    _identity(root, "Freescale i.MX8MQ Phanbein", ("fsl,imx8mq-phanbein", "fsl,imx8mq"))
    _cpus(root, 4, (1000000, 1300000, 1500000), LINUX_GOVERNORS, "ondemand")
    _write_if_absent(root, "dev/apex_0", "")  # a plain file stands in for the character device
    if not list(_thermal_zones(root)):
        install_thermal(root, (("cpu-thermal", 48.0), ("gpu-thermal", 47.0), ("vpu-thermal", 47.0)))


# --- conditions ------------------------------------------------------------------------------------------

def _thermal_zones(root: Path) -> Iterable[Path]:
    for folder in ("sys/class/thermal", "sys/devices/virtual/thermal"):
        yield from sorted((Path(root) / folder).glob("thermal_zone*"))


def install_thermal(root: Path | str, zones: Sequence[tuple[str, float]]) -> None:
    """Thermal zones (type, °C) in sysfs's layout: the files under /sys/devices/virtual/thermal,
    /sys/class/thermal/thermal_zoneN linking to them; any zones there before are replaced."""
    root = Path(root)
    for old in list(_thermal_zones(root)):
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old)
    for index, (kind, celsius) in enumerate(zones):
        folder = root / f"sys/devices/virtual/thermal/thermal_zone{index}"
        _write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/type", kind + "\n")
        _write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/temp", round(celsius * 1000))
        _replace_with_link(root / f"sys/class/thermal/thermal_zone{index}", folder)


def install_throttled(root: Path | str, value: int) -> None:
    """The Raspberry Pi firmware's throttle flags as its kernel exposes them (hex, no 0x); vcgencmd reads it."""
    _write(Path(root), THROTTLED, f"{value:x}\n")


def install_ina3221(root: Path | str, layout: str = "iio", rails: Sequence[dict[str, Any]] | None = None,
                    default_mode: int = 0) -> None:
    """An INA3221 power monitor with three rails.

    ``layout="iio"``: JetPack 4 (Nano), ``/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/`` with
    ``rail_name_N`` and ``in_power N_input`` (mW). ``layout="hwmon"``: JetPack 5, ``/sys/bus/i2c/
    drivers/ina3221/1-0040/hwmon/hwmon3/`` with ``inN_label``, ``inN_input`` (mV), ``currN_input`` (mA).
    """
    root = Path(root)
    if layout not in ("iio", "hwmon"):
        raise ValueError(f"layout must be 'iio' or 'hwmon', not {layout!r}")
    chosen = [dict(r) for r in (rails or (NANO_RAILS if layout == "iio" else ORIN_RAILS))]
    for index, rail in enumerate(chosen):
        if layout == "iio":
            base = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/"
            _write(root, base + f"rail_name_{index}", rail["name"] + "\n")
            rail["files"] = {"power": f"/{base}in_power{index}_input", "voltage": f"/{base}in_voltage{index}_input",
                             "current": f"/{base}in_current{index}_input"}
        else:
            base = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/"
            _write(root, base + "name", "ina3221\n")
            _write(root, base + f"in{index + 1}_label", rail["name"] + "\n")
            rail["files"] = {"voltage": f"/{base}in{index + 1}_input", "current": f"/{base}curr{index + 1}_input"}
        for path in rail["files"].values():
            _write(root, path.lstrip("/"), 0)
    model = {"default_mode": default_mode, "load": 0.0, "rails": chosen}
    _write(root, POWER_MODEL, json.dumps(model, indent=1) + "\n")
    write_power_readings(root, load=0.0)


def write_power_readings(root: Path | str, load: float) -> None:
    """Rewrite the rails for the board's nvpmodel mode, jetson_clocks state and ``load`` (0..1)."""
    root = Path(root)
    model_path = root / POWER_MODEL
    if not model_path.exists():
        return
    model = json.loads(model_path.read_text())
    sysfs = _standin_sysfs()
    status = (root / sysfs.NVPMODEL_STATUS.lstrip("/"))
    mode = model.get("default_mode", 0)
    if status.exists():
        found = [f for f in status.read_text().split() if f.startswith("pmode:")]
        mode = int(found[0][6:]) if found else mode
    readings = sysfs.rail_readings(model, mode, _clocks_pinned(root), max(0.0, min(1.0, load)))
    for rail in model["rails"]:
        milliwatts, millivolts, milliamps = readings[rail["name"]]
        for kind, value in (("power", milliwatts), ("voltage", millivolts), ("current", milliamps)):
            if rail["files"].get(kind):
                target = root / rail["files"][kind].lstrip("/")
                temporary = target.with_name(target.name + ".tmp")
                temporary.write_text(f"{value}\n")
                temporary.replace(target)  # the agent's sampler never reads a half-written value


def _clocks_pinned(root: Path) -> bool:
    pinned = []
    for cpufreq in sorted(Path(root).glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq")):
        online = cpufreq.parent / "online"
        if online.exists() and online.read_text().strip() == "0":
            continue
        try:
            pinned.append((cpufreq / "scaling_min_freq").read_text().strip()
                          == (cpufreq / "scaling_max_freq").read_text().strip())
        except OSError:
            continue
    return bool(pinned) and all(pinned)


_SYSFS: ModuleType | None = None


def _standin_sysfs() -> ModuleType:
    """The stand-ins' own ``_sysfs`` module, so the lab and the stand-ins share one power formula."""
    global _SYSFS
    if _SYSFS is None:
        spec = importlib.util.spec_from_file_location("farm_lab_standin_sysfs", STANDINS / "_sysfs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SYSFS = module
    return _SYSFS


def host_cpu_load() -> Callable[[], float]:
    """A load source: the fraction of this machine's CPU time spent busy since the previous call."""
    previous: list[tuple[int, int]] = []

    def sample() -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
        if not previous:
            previous.append((idle, total))
            return 0.0
        last_idle, last_total = previous[0]
        previous[0] = (idle, total)
        elapsed = total - last_total
        return 0.0 if elapsed <= 0 else 1.0 - (idle - last_idle) / elapsed

    return sample


class PowerUpdater:
    """Rewrites a board's INA3221 rails every ``interval`` seconds while it runs (a daemon thread).

    ``load`` returns 0..1; the default follows this machine's CPU use, where the
    simulated board's benchmark really runs, so power rises while it runs.
    """

    def __init__(self, root: Path | str, interval: float = 0.05, load: Callable[[], float] | None = None) -> None:
        self.root = Path(root)
        self.interval = interval
        self.load = load or host_cpu_load()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=f"power-updater {self.root.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            write_power_readings(self.root, self.load())
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Edge TPUs -------------------------------------------------------------------------------------------

def install_usb_accelerators(root: Path | str, ports: Iterable[tuple[str, int] | tuple[str, int, str]]) -> None:
    """Coral USB Accelerators at sysfs port paths with their negotiated speeds (Mb/s).

    ``ports``: ("2-1", 5000), ("1-1.2", 480) and optionally a third item, "app"
    (18d1:9302, firmware loaded, the default) or "dfu" (1a6e:089a, before the
    first use loads it). The layout is the kernel's: devices live under their
    bus's root hub (``usbN``) and any hub on the way (``1-1`` for ``1-1.2``), and
    ``/sys/bus/usb/devices/<name>`` links to them. Root hubs and parent hubs are
    created as needed; each device gets an interface directory (``2-1:1.0``).
    """
    root = Path(root)
    devices = [(p[0], p[1], p[2] if len(p) > 2 else "app") for p in ports]  # type: ignore[misc]
    bus_speed: dict[int, int] = {}
    for port, speed, _ in devices:
        bus = int(port.split("-", 1)[0])
        bus_speed[bus] = max(bus_speed.get(bus, 0), speed)
    devnums: dict[int, int] = {}
    for bus, speed in sorted(bus_speed.items()):
        ids = ("1d6b", "0003", "Linux Foundation", "3.0 root hub") if speed >= 5000 else \
            ("1d6b", "0002", "Linux Foundation", "2.0 root hub")
        _usb_node(root, f"usb{bus}", bus, 1, "0", max(speed, 480), ids)
        devnums[bus] = 1
    for port, speed, state in devices:
        bus = int(port.split("-", 1)[0])
        chain = port.split("-", 1)[1].split(".")
        for depth in range(1, len(chain)):  # hubs between the root hub and the device
            hub = f"{bus}-{'.'.join(chain[:depth])}"
            if not (root / "sys/bus/usb/devices" / hub / "idVendor").exists():
                devnums[bus] += 1
                _usb_node(root, hub, bus, devnums[bus], ".".join(chain[:depth]), min(speed, 480)
                          if bus_speed[bus] < 5000 else bus_speed[bus], HUB_ID)
        devnums[bus] += 1
        _usb_node(root, port, bus, devnums[bus], ".".join(chain), speed, EDGETPU_IDS[state])


def _usb_node(root: Path, name: str, bus: int, devnum: int, devpath: str, speed: int,
              ids: tuple[str, str, str, str]) -> None:
    if name.startswith("usb"):
        relative = f"{USB_CONTROLLER}/{name}"
    else:
        chain = name.split("-", 1)[1].split(".")
        parents = [f"{bus}-{'.'.join(chain[:depth])}" for depth in range(1, len(chain) + 1)]
        relative = f"{USB_CONTROLLER}/usb{bus}/" + "/".join(parents)
    folder = root / relative
    vendor, product, manufacturer, product_name = ids
    for attribute, value in (("idVendor", vendor), ("idProduct", product), ("speed", speed), ("busnum", bus),
                             ("devnum", devnum), ("devpath", devpath), ("manufacturer", manufacturer),
                             ("product", product_name)):
        if value != "":
            _write(root, f"{relative}/{attribute}", value if isinstance(value, int) else f"{value}\n")
    interface = f"{bus}-0:1.0" if name.startswith("usb") else f"{name}:1.0"
    _write(root, f"{relative}/{interface}/bInterfaceClass", "09\n" if name.startswith("usb") else "ff\n")
    _replace_with_link(root / "sys/bus/usb/devices" / name, folder)
    _replace_with_link(root / "sys/bus/usb/devices" / interface, folder / interface)


def install_libedgetpu(root: Path | str, package: str = "libedgetpu1-std", version: str = "16.0",
                       multiarch: str = "aarch64-linux-gnu") -> None:
    """libedgetpu.so.1 (a link to libedgetpu.so.1.0, as the package installs it) and its dpkg record."""
    root = Path(root)
    library = _write(root, f"usr/lib/{multiarch}/libedgetpu.so.1.0", "")
    _replace_with_link(library.with_name("libedgetpu.so.1"), library)
    architecture = {"aarch64-linux-gnu": "arm64", "arm-linux-gnueabihf": "armhf",
                    "x86_64-linux-gnu": "amd64"}.get(multiarch, "arm64")
    status = root / "var/lib/dpkg/status"
    existing = status.read_text() if status.exists() else ""
    record = (f"Package: {package}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
              f"Installed-Size: 1101\nMaintainer: Coral <coral-support@google.com>\nArchitecture: {architecture}\n"
              f"Source: libedgetpu\nVersion: {version}\nProvides: libedgetpu1 (= {version})\n"
              f"Depends: libc6 (>= 2.17), libgcc1 (>= 1:3.0), libstdc++6 (>= 5.2), libusb-1.0-0 (>= 2:1.0.9)\n"
              f"Description: Support library for Edge TPU\n Support library (standard speed) for the Edge TPU\n")
    _write(root, "var/lib/dpkg/status", (existing.rstrip("\n") + "\n\n" if existing.strip() else "") + record)


# --- running the stand-ins -------------------------------------------------------------------------------

def standin_env(root: Path | str, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which the agent and the stand-ins see ``root`` as the board."""
    env = dict(os.environ if base is None else base)
    env["FARM_DEVICE_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(STANDINS), env.get("PATH", "")])
    return env


def run_standin(root: Path | str, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a stand-in against ``root`` (with this Python, whatever ``python3`` PATH has)."""
    done = subprocess.run([sys.executable, str(STANDINS / tool), *args], env=standin_env(root),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done
