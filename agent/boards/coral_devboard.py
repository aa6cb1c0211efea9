"""Coral Dev Board (NXP i.MX 8M, "Phanbein"): the cpufreq governor is its power mode; its Edge TPU is on PCIe.

Its device tree names the SoC, not Coral ("Freescale i.MX8MQ Phanbein"), so the
SoC's names are among the hints. No power monitor, no firmware throttling flags.
"""

from ..sysfs import device_tree_compatible
from .base import BoardFamily
from .governor import GOVERNOR_MODES, GovernorDriver


class CoralDevBoard(BoardFamily):
    name = "coral_devboard"
    name_hints = ("devboard", "dev board", "coral", "i.mx", "imx", "phanbein")
    inventory_prefixes = ("devboard",)
    inventory_example = "devboard"
    power_controls = (GovernorDriver,)

    def present(self):
        return any(entry.startswith("fsl,imx8mq-phanbein") for entry in device_tree_compatible())

    def power_control(self, board=None):
        return GovernorDriver(board)

    def default_power_modes(self, inventory_board):
        return {name: dict(spec) for name, spec in GOVERNOR_MODES.items()}
