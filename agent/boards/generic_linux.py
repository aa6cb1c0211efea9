"""Any other Linux host (an x86 PC with USB accelerators): the cpufreq governor where it has one, else nothing.

The family of last resort: it claims every board the others do not, and has no
default power modes, since a PC's governors say nothing about its power draw.
"""

from .base import BoardFamily, NoPowerControl
from .governor import GovernorDriver, has_governors


class GenericLinux(BoardFamily):
    name = "generic_linux"
    inventory_example = "x86"
    power_controls = (GovernorDriver, NoPowerControl)

    def present(self):
        return True

    def power_control(self, board=None):
        return GovernorDriver(board) if has_governors() else NoPowerControl(board)
