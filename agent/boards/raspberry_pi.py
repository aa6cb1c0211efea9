"""Raspberry Pi: recognised by its device tree, powered by the cpufreq governor, throttling told by vcgencmd.

The firmware keeps its own throttling flags (``vcgencmd get_throttled``):
bits 0-3 describe now, bits 16-19 the same events since boot. No power monitor.
"""

from .. import tools
from ..sysfs import device_tree_compatible
from .base import BoardFamily
from .governor import GOVERNOR_MODES, GovernorDriver

THROTTLE_BITS = ((0, "under-voltage"), (1, "arm-frequency-capped"), (2, "throttled"), (3, "soft-temperature-limit"))
SINCE_BOOT_SHIFT = 16


def decode_throttled(value):
    """vcgencmd's flags: 0x50005 -> now under-voltage and throttled, and both since boot."""
    now = [name for bit, name in THROTTLE_BITS if value & (1 << bit)]
    since = [name for bit, name in THROTTLE_BITS if value & (1 << (bit + SINCE_BOOT_SHIFT))]
    return {"raw": "0x{:x}".format(value), "now": now, "since_boot": since, "throttled": bool(now)}


def vcgencmd_throttled():
    """decode_throttled of ``vcgencmd get_throttled``, None without vcgencmd, or {"error": ...}."""
    tool = tools.find_tool("vcgencmd")
    if tool is None:
        return None
    import subprocess  # only where vcgencmd is: see tools.run_tool

    try:
        done = subprocess.run([tool, "get_throttled"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": "vcgencmd get_throttled: {}".format(exc)}
    text = done.stdout.strip()
    if done.returncode != 0 or not text.startswith("throttled="):
        # e.g. "VCHI initialization failed" when the user is not in the video group.
        return {"error": "vcgencmd get_throttled: {}".format((text + " " + done.stderr.strip()).strip())}
    try:
        return decode_throttled(int(text.split("=", 1)[1], 16))
    except ValueError:
        return {"error": "vcgencmd get_throttled printed {!r}".format(text)}


class RaspberryPi(BoardFamily):
    name = "raspberry_pi"
    name_hints = ("raspberry", "rpi")
    inventory_prefixes = ("rpi",)
    inventory_example = "rpi4"
    power_controls = (GovernorDriver,)

    def present(self):
        return any(entry.startswith("raspberrypi,") for entry in device_tree_compatible())

    def power_control(self, board=None):
        return GovernorDriver(board)

    def default_power_modes(self, inventory_board):
        return {name: dict(spec) for name, spec in GOVERNOR_MODES.items()}

    def firmware_throttling(self):
        # Only a Pi's firmware answers; the registry asks this family only on a Pi, so a vcgencmd
        # elsewhere (a shared tools folder) says nothing about another board.
        return vcgencmd_throttled()
