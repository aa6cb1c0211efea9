"""The two interfaces a board family implements: the family itself, and the power control it hands out.

A ``BoardFamily`` describes (how the board is recognised, its default power
modes, its power monitor, its throttling source, its thermal quirks); a
``PowerControl`` acts (reads and sets the power mode, verifies it, restores it).
"""

import abc

from ..errors import PowerError
from ..sysfs import CPU_DIR, cpu_max_freqs, cpus_online, root_path


class PowerControl(abc.ABC):
    """Sets a power-mode spec on a board and puts the board back; ``name`` goes into the state file."""

    name = None
    # The settings a power-mode spec may give this control, as (key, JSON types) pairs: the job
    # schema accepts exactly the union over every family (``boards.power_spec_types``).
    spec_types = ()
    # The setting that says which mode a board is in (an nvpmodel id, a governor): how the controller
    # tells which inventory mode a board reports, and what a measured mode's label shows.
    identity_key = None

    def __init__(self, board=None):
        self.board = board  # the board's name, for messages

    @classmethod
    def label(cls, measured):
        """How a measured mode reads in results: its name."""
        return measured.get("name")

    @abc.abstractmethod
    def current_mode(self):
        """{"driver": name, "name": ..., ...} as the board is now."""

    @abc.abstractmethod
    def check(self, spec):
        """Raise PowerError for a spec this board cannot take, before anything is recorded or changed."""

    @abc.abstractmethod
    def save(self, state_dir):
        """What ``restore`` needs to put the board back (JSON), taken before any change."""

    @abc.abstractmethod
    def set_mode(self, spec):
        """Change the board to ``spec``."""

    @abc.abstractmethod
    def verify(self, spec):
        """The board measured against ``spec``: current_mode plus "mismatches" and "ok"."""

    @abc.abstractmethod
    def restore(self, saved):
        """Put back what ``save`` returned; raise PowerError when the board does not return."""

    def modes(self):
        """The named modes the board's tool lists ([{"id": 0, "name": "MAXN"}, ...]); most boards list none."""
        return []


class NoPowerControl(PowerControl):
    """A board with neither a power-mode tool nor cpufreq: it can only run jobs that leave power alone."""

    name = "none"

    def current_mode(self):
        return {"driver": self.name, "name": None}

    def _refuse(self, spec):
        raise PowerError("power mode '{}' cannot be set: this board ({}) has neither nvpmodel nor a cpufreq "
                         "governor under {}".format(spec.get("name"), self.board or "unknown board",
                                                    root_path(CPU_DIR)))

    def check(self, spec):
        self._refuse(spec)

    def save(self, state_dir):
        return self.current_mode()

    def set_mode(self, spec):
        self._refuse(spec)

    def verify(self, spec):
        self._refuse(spec)

    def restore(self, saved):
        return None


def measure(mode):
    """A current_mode with the CPU facts every verify reports, and no mismatch yet."""
    measured = dict(mode)
    measured["cpus_online"] = cpus_online()
    measured["cpu_max_freq_khz"] = cpu_max_freqs()
    measured["mismatches"] = []
    return measured


def on_off(flag):
    return "on" if flag else "off"


class BoardFamily(abc.ABC):
    """Everything one family of boards needs, in one module: subclass it and list it in ``boards.FAMILIES``.

    ``name_hints`` are lower-case words of the board name the device reports
    (device-tree model, L4T string) or the agent is given; ``inventory_prefixes``
    start the board names users write in an inventory (``rpi4``, ``devboard``).
    """

    name = None
    name_hints = ()
    inventory_prefixes = ()
    # A board name as a user would write it in an inventory, for help texts.
    inventory_example = None
    # Every PowerControl class ``power_control`` may hand out: a state file names one to restore with.
    power_controls = ()
    # Thermal zones that read a fixed value with no sensor behind them: reported, never the maximum.
    placeholder_zones = ()

    def named(self, board):
        """Whether a board name (as the device reports it, or as the agent is given it) is this family's."""
        lowered = (board or "").lower()
        return any(hint in lowered for hint in self.name_hints)

    def declared(self, inventory_board):
        """Whether an inventory's board name is this family's."""
        lowered = (inventory_board or "").lower()
        return any(lowered.startswith(prefix) for prefix in self.inventory_prefixes)

    @abc.abstractmethod
    def present(self):
        """Whether the device root shows this family when no family recognises its board name."""

    def board_name(self):
        """A board name from this family's own files, for a device without a device-tree model (None: none)."""

    @abc.abstractmethod
    def power_control(self, board=None):
        """The PowerControl for this board (``board``: its name, for messages)."""

    def default_power_modes(self, inventory_board):
        """{mode name: spec} a host of this board gets when its inventory names no power modes."""
        return {}

    def power_monitor(self):
        """(source, [(rail, {"power"|"voltage"|"current": file})]) of the on-board power monitor, or (None, [])."""
        return None, []

    def is_input_rail(self, rail):
        """Whether a rail of this family's power monitor feeds the whole board (its reading is the total)."""
        return False

    def gpu(self, inventory_board=None):
        """The board's GPU (cores, maximum and current clock, load, peaks) as ``jetson_gpu.describe``, or None."""
        return

    def is_gpu_rail(self, rail):
        """Whether a rail of this family's power monitor feeds the GPU alone."""
        return False

    def firmware_throttling(self):
        """The board firmware's own throttling report ({"now": [...], ...}, or {"error": ...}), or None."""
