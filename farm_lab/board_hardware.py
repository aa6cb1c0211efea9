"""Give each simulated lab host the power and USB hardware of its board, and the tools that change it.

``boards.write_device_root`` lays out a board's identity; this adds the layers
from ``hardware``: a Jetson Nano's nvpmodel config, INA3221 rails and CPUs
that go offline in 5W, a Raspberry Pi's firmware throttle flags, the x86 PC's
two Coral USB Accelerators in the kernel's sysfs layout. The stand-in
``nvpmodel``, ``jetson_clocks`` and ``vcgencmd`` are copied next to the device
roots (the lab's login user must be able to run them) and put first on the
agent's PATH; vcgencmd and nvpmodel as native fronts where a C compiler built
them (``standin_native``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import hardware, standin_libedgetpu, standin_native
from .boards import Board

# Where login shells and sudo's secure_path look, after the stand-ins.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
RPI_MODELS = {"rpi3b+": "3B+", "rpi4": "4B"}


# Where each board's libedgetpu lives (the agent looks there; the lab puts it on LD_LIBRARY_PATH).
LIBRARY_MULTIARCH = {"devboard": "aarch64-linux-gnu", "x86-usb": "x86_64-linux-gnu"}


def has_edgetpu(board: Board) -> bool:
    return any((d.vendor, d.product) == ("18d1", "9302") for d in board.usb) or "dev/apex_0" in board.files


def install_libedgetpu(board: Board, root: Path, built: Path | None) -> Path | None:
    """The stand-in libedgetpu (``standin_libedgetpu``) in a board with an Edge TPU; returns its folder."""
    if built is None or not has_edgetpu(board):
        return None
    return standin_libedgetpu.install(root, built, LIBRARY_MULTIARCH.get(board.name, "x86_64-linux-gnu"))


def library_folder(board: Board, root: Path) -> Path | None:
    """The folder holding the stand-in libedgetpu in ``root``, if the lab installed it there."""
    folder = root / "usr" / "lib" / LIBRARY_MULTIARCH.get(board.name, "x86_64-linux-gnu")
    return folder if (folder / standin_libedgetpu.LIBRARY).exists() else None


def install(board: Board, root: Path, libedgetpu: Path | None = None) -> None:
    """Add ``board``'s power and USB hardware to the device root ``root`` (written by write_device_root);
    with ``libedgetpu`` (a built stand-in), a board with an Edge TPU gets it as its libedgetpu.so.1."""
    if board.name.startswith("jetson-nano"):
        hardware.install_jetson_nano(root)
        hardware.install_ina3221(root)
    elif board.name in RPI_MODELS:
        hardware.install_rpi(root, RPI_MODELS[board.name])
    elif board.name == "devboard":
        hardware.install_devboard(root)
    accelerators = [(d.port, d.speed) for d in board.usb if (d.vendor, d.product) == ("18d1", "9302")]
    if accelerators:
        # The kernel's layout (devices under their root hub, /sys/bus/usb/devices linking to them)
        # replaces the board's flat folders; the hubs on the way are rebuilt from the ports.
        shutil.rmtree(root / "sys/bus/usb/devices", ignore_errors=True)
        hardware.install_usb_accelerators(root, accelerators)
    install_libedgetpu(board, root, libedgetpu)
    run_at_limit(root)


def run_at_limit(root: Path) -> None:
    """Clock every CPU (and GPU) the way a loaded board runs: at its limit, unless its governor is powersave.

    A lab board exists to be benchmarked and nothing moves its clocks with load, so the idle
    clocks ``hardware`` writes would read as "clocked down under load" (throttled) on every
    result. The stand-in nvpmodel keeps this when it changes the limit.
    """
    for folder in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        governor = (folder / "scaling_governor").read_text().strip() if (folder / "scaling_governor").exists() else ""
        limit = folder / "scaling_max_freq"
        if governor != "powersave" and limit.exists():
            (folder / "scaling_cur_freq").write_text(limit.read_text())
    # The GPU likewise: devfreq raises it to its cap (nvpmodel's GPU MAX_FREQ) under load.
    for folder in sorted((root / "sys/devices").glob("*/devfreq/*")):
        if (folder / "max_freq").exists() and (folder / "cur_freq").exists():
            (folder / "cur_freq").write_text((folder / "max_freq").read_text())


def publish_tools(public: Path, native: dict[str, Path] | None = None) -> Path:
    """Copy the stand-in tools under the lab's public directory; returns the folder to put on PATH.

    With ``native`` (``standin_native.build``), vcgencmd and nvpmodel are their native fronts, the
    Python stand-ins beside them as TOOL.py."""
    tools = public / "tools"
    if tools.exists():
        shutil.rmtree(tools)
    shutil.copytree(hardware.standins_dir(), tools, ignore=shutil.ignore_patterns("__pycache__", "native"))
    tools.chmod(0o755)
    for item in tools.iterdir():
        item.chmod(0o755 if item.is_dir() or not item.suffix else 0o644)
    if native:
        standin_native.install(tools, native)
    return tools


def agent_path(tools: Path) -> str:
    """The PATH a lab host's agent runs with: the stand-ins first, then the usual system folders."""
    return ":".join([str(tools), *SYSTEM_PATH])
