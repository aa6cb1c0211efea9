"""What each simulated board looks like: one entry per board, every quirk in its entry.

A board's *device root* is a directory laid out like the parts of ``/`` the agent
reads (``/proc/device-tree/model``, ``/etc/nv_tegra_release``, ``/etc/os-release``,
``/sys/devices/system/cpu/online``, ``/proc/meminfo``...). The agent on a lab
host gets ``FARM_DEVICE_ROOT`` pointing there, so the same code path that reads a
real Jetson reads this directory instead.

USB devices are plain directories under ``sys/bus/usb/devices/``, where a real
kernel has symbolic links into ``/sys/devices``; readers should not care.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

# The Coral USB Accelerator after its firmware is loaded (before: 1a6e:089a).
CORAL_USB = ("18d1", "9302", "Google Inc.")


@dataclass(frozen=True)
class Runtime:
    """The TFLite runtime pip installs for a board, with the numpy it works with."""

    name: str
    version: str
    requirements: tuple[str, ...]
    module: str = "tflite_runtime.interpreter"  # what the agent imports: proof the install works ("a, b": both)
    extra: str = ""  # other runtimes installed beside it, in the venv's name

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}" + (f"-{self.extra}" if self.extra else "")

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


TFLITE_2_11 = Runtime("tflite-runtime", "2.11.0", ("tflite-runtime==2.11.0", "numpy<1.22"))
# tflite-runtime 2.14 crashes on numpy 2 although its metadata allows it.
TFLITE_2_14 = Runtime("tflite-runtime", "2.14.0", ("tflite-runtime==2.14.0", "numpy<2"))
# The same with ONNX Runtime beside it, for the onnxruntime backend: 1.14.1 is the last release with
# CPython 3.7 wheels (it needs numpy >= 1.21.6, which numpy<1.22 leaves); 1.20.1 has 3.11 wheels and
# runs on numpy 1.x. Their own venvs (the key names onnxruntime), so labs without it keep theirs.
TFLITE_2_11_ORT = Runtime("tflite-runtime", "2.11.0", ("tflite-runtime==2.11.0", "numpy<1.22", "onnxruntime==1.14.1"),
                          module="tflite_runtime.interpreter, onnxruntime", extra="onnxruntime-1.14.1")
TFLITE_2_14_ORT = Runtime("tflite-runtime", "2.14.0", ("tflite-runtime==2.14.0", "numpy<2", "onnxruntime==1.20.1"),
                          module="tflite_runtime.interpreter, onnxruntime", extra="onnxruntime-1.20.1")


@dataclass(frozen=True)
class UsbDevice:
    """One device in sysfs: ``port`` is its sysfs name (``2-1``, ``1-1.2``), ``speed`` in Mb/s."""

    port: str
    speed: int
    vendor: str
    product: str
    manufacturer: str = ""
    product_name: str = ""


def coral(port: str, speed: int) -> UsbDevice:
    return UsbDevice(port, speed, CORAL_USB[0], CORAL_USB[1], CORAL_USB[2])


@dataclass(frozen=True)
class Board:
    name: str                          # the inventory's board field, host names, tags, --boards
    description: str
    python: str                        # the major.minor its real twin runs the agent with
    runtime: Runtime | None
    os_release: dict[str, str]
    kernel: str
    cpus_online: str                   # the kernel's list format: "0-3"
    memory_kib: int
    model: str | None = None           # /proc/device-tree/model; None: a PC without a device tree
    compatible: tuple[str, ...] = ()   # /proc/device-tree/compatible
    governors: tuple[str, ...] = ("performance", "powersave")
    governor: str = "performance"
    frequencies_khz: tuple[int, ...] = ()
    thermal_zones: tuple[tuple[str, int], ...] = ()   # (type, millidegrees C)
    usb: tuple[UsbDevice, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # any other file, by path under the root


def _ubuntu(version: str, release_name: str) -> dict[str, str]:
    codename = release_name.split()[0].lower()
    return {"NAME": "Ubuntu", "VERSION": f"{version} ({release_name})", "ID": "ubuntu", "ID_LIKE": "debian",
            "PRETTY_NAME": f"Ubuntu {version}", "VERSION_ID": version[:5], "VERSION_CODENAME": codename}


def _debian_bookworm() -> dict[str, str]:
    # Raspberry Pi OS (64-bit) ships Debian's own os-release.
    return {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "NAME": "Debian GNU/Linux", "VERSION_ID": "12",
            "VERSION": "12 (bookworm)", "VERSION_CODENAME": "bookworm", "ID": "debian"}


JETSON_NANO_THERMAL = (("AO-therm", 40500), ("CPU-therm", 37500), ("GPU-therm", 36500), ("PLL-therm", 35000),
                       ("PMIC-Die", 100000), ("thermal-fan-est", 37000))
JETSON_NANO_GOVERNORS = ("interactive", "conservative", "ondemand", "userspace", "powersave", "performance",
                         "schedutil")
JETSON_NANO_FREQUENCIES = (102000, 204000, 307200, 403200, 518400, 614400, 710400, 825600, 921600, 1036800,
                           1132800, 1224000, 1326000, 1428000, 1479000)
RPI_GOVERNORS = ("conservative", "ondemand", "userspace", "powersave", "performance", "schedutil")


def _l4t(revision: str, gcid: str, date: str) -> str:
    return (f"# R32 (release), REVISION: {revision}, GCID: {gcid}, BOARD: t210ref, EABI: aarch64, "
            f"DATE: {date}\n")


BOARDS: dict[str, Board] = {board.name: board for board in (
    Board(
        name="jetson-nano",
        description="Jetson Nano, JetPack 4.6.1 (L4T R32.7.1), Python 3.7 installed by hand",
        python="3.7", runtime=TFLITE_2_11_ORT,
        os_release=_ubuntu("18.04.6 LTS", "Bionic Beaver"), kernel="4.9.253-tegra", cpus_online="0-3",
        memory_kib=4059356, model="NVIDIA Jetson Nano Developer Kit",
        compatible=("nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"),
        governors=JETSON_NANO_GOVERNORS, governor="schedutil", frequencies_khz=JETSON_NANO_FREQUENCIES,
        thermal_zones=JETSON_NANO_THERMAL,
        files={"etc/nv_tegra_release": _l4t("7.1", "29818004", "Sat Feb 19 17:05:08 UTC 2022")},
    ),
    Board(
        # A stock JetPack 4 image: the system Python 3.6 and no TFLite runtime at all.
        name="jetson-nano-jp4",
        description="Jetson Nano, stock JetPack 4.4 (L4T R32.4.4), system Python 3.6, no runtime",
        python="3.6", runtime=None,
        os_release=_ubuntu("18.04.5 LTS", "Bionic Beaver"), kernel="4.9.140-tegra", cpus_online="0-3",
        memory_kib=4059356, model="NVIDIA Jetson Nano Developer Kit",
        compatible=("nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"),
        governors=JETSON_NANO_GOVERNORS, governor="schedutil", frequencies_khz=JETSON_NANO_FREQUENCIES,
        thermal_zones=JETSON_NANO_THERMAL,
        files={"etc/nv_tegra_release": _l4t("4.4", "23942405", "Fri Oct 16 19:44:43 UTC 2020")},
    ),
    Board(
        name="rpi3b+",
        description="Raspberry Pi 3 Model B+, Raspberry Pi OS bookworm 64-bit, USB 2.0 only",
        python="3.11", runtime=TFLITE_2_14_ORT,
        os_release=_debian_bookworm(), kernel="6.1.0-rpi7-rpi-v8", cpus_online="0-3", memory_kib=948304,
        model="Raspberry Pi 3 Model B Plus Rev 1.3", compatible=("raspberrypi,3-model-b-plus", "brcm,bcm2837"),
        governors=RPI_GOVERNORS, governor="ondemand", frequencies_khz=(600000, 1400000),
        thermal_zones=(("cpu-thermal", 47236),),
    ),
    Board(
        name="rpi4",
        description="Raspberry Pi 4 Model B, Raspberry Pi OS bookworm 64-bit",
        python="3.11", runtime=TFLITE_2_14_ORT,
        os_release=_debian_bookworm(), kernel="6.1.0-rpi7-rpi-v8", cpus_online="0-3", memory_kib=3884360,
        model="Raspberry Pi 4 Model B Rev 1.4", compatible=("raspberrypi,4-model-b", "brcm,bcm2711"),
        governors=RPI_GOVERNORS, governor="ondemand", frequencies_khz=(600000, 1000000, 1500000, 1800000),
        thermal_zones=(("cpu-thermal", 44303),),
    ),
    Board(
        name="devboard",
        description="Coral Dev Board, Mendel Linux 5 (Eagle), on-board PCIe Edge TPU",
        python="3.7", runtime=TFLITE_2_11_ORT,
        os_release={"PRETTY_NAME": "Mendel GNU/Linux 5 (Eagle)", "NAME": "Mendel GNU/Linux", "VERSION_ID": "5",
                    "VERSION": "5 (eagle)", "ID": "mendel", "ID_LIKE": "debian"},
        kernel="4.14.98-imx", cpus_online="0-3", memory_kib=1013264,
        model="Freescale i.MX8MQ Phanbein", compatible=("fsl,imx8mq-phanbein", "fsl,imx8mq"),
        governors=("conservative", "ondemand", "userspace", "powersave", "performance", "schedutil"),
        governor="ondemand", frequencies_khz=(1000000, 1300000, 1500000),
        thermal_zones=(("cpu-thermal", 48000), ("gpu-thermal", 47000), ("vpu-thermal", 47000)),
        # The PCIe Edge TPU's device node; a plain file stands in for the character device.
        files={"dev/apex_0": ""},
    ),
    Board(
        name="x86-usb",
        description="x86-64 PC, Ubuntu 22.04, two Coral USB Accelerators (one on USB 3, one behind a USB 2 hub)",
        python="3.11", runtime=TFLITE_2_14_ORT,
        os_release=_ubuntu("22.04.4 LTS", "Jammy Jellyfish"), kernel="5.15.0-105-generic", cpus_online="0-3",
        # A benchmarking PC runs the performance governor (pycoral's benchmarks ask for it): at powersave
        # its loaded cores sit at 800 MHz, below their limit, and every CPU result is invalid (throttled).
        memory_kib=16303412, governors=("performance", "powersave"), governor="performance",
        frequencies_khz=(800000, 3600000), thermal_zones=(("x86_pkg_temp", 45000),),
        usb=(
            UsbDevice("usb1", 480, "1d6b", "0002", "Linux Foundation", "2.0 root hub"),
            UsbDevice("usb2", 5000, "1d6b", "0003", "Linux Foundation", "3.0 root hub"),
            UsbDevice("1-1", 480, "05e3", "0610", "GenesysLogic", "USB2.0 Hub"),
            coral("1-1.2", 480),
            coral("2-1", 5000),
        ),
        files={"sys/class/dmi/id/product_name": "OptiPlex 7070\n", "sys/class/dmi/id/sys_vendor": "Dell Inc.\n"},
    ),
)}

# Round-robin order: any 6 consecutive hosts cover every board, and the Python 3.6
# Jetson only appears once a lab has 6 hosts, so small labs all have a runtime.
DEFAULT_BOARDS = ("jetson-nano", "rpi3b+", "rpi4", "devboard", "x86-usb", "jetson-nano-jp4")


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown board '{name}'; the lab knows {', '.join(BOARDS)}") from None


def write_device_root(spec: Board, root: Path) -> None:
    """Lay out ``root`` like ``spec``'s ``/``, replacing whatever was there."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    files: dict[str, str] = {
        "etc/os-release": "".join(f'{k}="{v}"\n' for k, v in spec.os_release.items()),
        "proc/sys/kernel/osrelease": spec.kernel + "\n",
        "proc/meminfo": (f"MemTotal:       {spec.memory_kib} kB\n"
                         f"MemFree:        {spec.memory_kib // 2} kB\n"
                         f"MemAvailable:   {spec.memory_kib * 3 // 4} kB\n"),
        "sys/devices/system/cpu/online": spec.cpus_online + "\n",
        "sys/devices/system/cpu/possible": spec.cpus_online + "\n",
    }
    if spec.model is not None:
        # Device-tree strings end with a NUL byte, as the kernel exposes them.
        files["proc/device-tree/model"] = spec.model + "\0"
        files["proc/device-tree/compatible"] = "".join(c + "\0" for c in spec.compatible)
    files.update(_cpufreq(spec))
    for index, (kind, millidegrees) in enumerate(spec.thermal_zones):
        files[f"sys/class/thermal/thermal_zone{index}/type"] = kind + "\n"
        files[f"sys/class/thermal/thermal_zone{index}/temp"] = f"{millidegrees}\n"
    for number, device in enumerate(spec.usb, start=1):
        files.update(_usb_device(device, number))
    files.update(spec.files)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def _cpufreq(spec: Board) -> dict[str, str]:
    if not spec.frequencies_khz:
        return {}
    out = {}
    low, high = min(spec.frequencies_khz), max(spec.frequencies_khz)
    current = high if spec.governor == "performance" else low
    for cpu in _cpu_list(spec.cpus_online):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq/"
        out.update({
            base + "scaling_governor": spec.governor + "\n",
            base + "scaling_available_governors": " ".join(spec.governors) + "\n",
            base + "scaling_available_frequencies": " ".join(map(str, spec.frequencies_khz)) + "\n",
            base + "scaling_min_freq": f"{low}\n",
            base + "scaling_max_freq": f"{high}\n",
            base + "scaling_cur_freq": f"{current}\n",
            base + "cpuinfo_min_freq": f"{low}\n",
            base + "cpuinfo_max_freq": f"{high}\n",
        })
    return out


def _usb_device(device: UsbDevice, number: int) -> dict[str, str]:
    base = f"sys/bus/usb/devices/{device.port}/"
    root_hub = device.port.startswith("usb")
    bus = device.port[3:] if root_hub else device.port.split("-", 1)[0]
    out = {
        base + "idVendor": device.vendor + "\n",
        base + "idProduct": device.product + "\n",
        base + "speed": f"{device.speed}\n",
        base + "busnum": f"{bus}\n",
        base + "devnum": f"{1 if root_hub else number}\n",
        base + "devpath": ("0" if root_hub else device.port.split("-", 1)[1]) + "\n",
    }
    if device.manufacturer:
        out[base + "manufacturer"] = device.manufacturer + "\n"
    if device.product_name:
        out[base + "product"] = device.product_name + "\n"
    return out


def _cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus
