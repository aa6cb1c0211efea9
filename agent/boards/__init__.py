"""Board families, one module each, and the registry that picks one from a board's name or its files.

Each family (``jetson``, ``raspberry_pi``, ``coral_devboard``, ``generic_linux``)
subclasses ``base.BoardFamily``: how it is recognised, its power control (a
``base.PowerControl``), its default power modes (the controller reads them from
here), its power monitor, its throttling source and its thermal quirks.

To add a family (a Jetson Orin variant is only a ``jetson.DEFAULT_MODES`` entry;
a board with its own tools is a family): write ``agent/boards/<family>.py`` with a
``BoardFamily`` subclass, put an instance in ``FAMILIES`` below, ahead of
``GenericLinux`` (the family of last resort), and add a test that builds its
device root in tmp_path and checks it is picked and what it sets. Only Python 3.6
and the standard library: this package runs on the boards.
"""

from ..sysfs import device_tree_model
from .base import BoardFamily, NoPowerControl, PowerControl
from .coral_devboard import CoralDevBoard
from .generic_linux import GenericLinux
from .jetson import Jetson, jetpack_of, l4t_release, parse_l4t
from .raspberry_pi import RaspberryPi

__all__ = [
    "FAMILIES",
    "BoardFamily",
    "PowerControl",
    "control_named",
    "declared_family",
    "default_power_modes",
    "detect_board",
    "family_for",
    "firmware_throttling",
    "gpu",
    "inventory_examples",
    "jetpack_of",
    "l4t_release",
    "measured_label",
    "mode_matches",
    "parse_l4t",
    "placeholder_zones",
    "power_control",
    "power_monitor",
    "power_spec_types",
]

# Asked in this order; the last one claims every board.
FAMILIES = [Jetson(), RaspberryPi(), CoralDevBoard(), GenericLinux()]


def detect_board():
    """The board's name: its device-tree model, else what a family's own files say, else None."""
    model = device_tree_model()
    if model:
        return model
    for family in FAMILIES:
        name = family.board_name()
        if name:
            return name
    return None


def family_for(board=None):
    """The family of a board name (device-reported or an inventory's), else of the device root's files.

    ``board`` None means this device: its detected name, then each family's own evidence.
    """
    name = board if board is not None else detect_board()
    for family in FAMILIES:
        if family.named(name):
            return family
    for family in FAMILIES:
        if family.present():
            return family
    return FAMILIES[-1]


def declared_family(inventory_board):
    """The family an inventory's board name (``jetson-nano``, ``rpi4``) declares, or None for others."""
    for family in FAMILIES:
        if family.declared(inventory_board):
            return family
    return None


def power_control(board=None):
    """The PowerControl for a board name (or this device's, for None)."""
    return family_for(board).power_control(detect_board())


def power_spec_types():
    """Every setting a power-mode spec may hold, over every family's controls, with its JSON types."""
    types = {}
    for family in FAMILIES:
        for control in family.power_controls:
            types.update(control.spec_types)
    return types


def _controls():
    seen = []
    for family in FAMILIES:
        for control in family.power_controls:
            if control not in seen:
                seen.append(control)
    return seen


def _identifying_control(doc):
    """The first control (in FAMILIES order) whose identity setting ``doc`` holds."""
    for control in _controls():
        if control.identity_key and doc.get(control.identity_key) is not None:
            return control
    return None


def mode_matches(settings, current):
    """Whether an inventory mode's settings are the mode a board reports being in (``current_mode``)."""
    control = _identifying_control(settings)
    return control is not None and settings[control.identity_key] == current.get(control.identity_key)


def measured_label(measured):
    """A measured power mode as results show it ("5W (nvpmodel 1)", "powersave"), or None."""
    control = _identifying_control(measured)
    label = control.label(measured) if control is not None else measured.get("name")
    return str(label) if label else None


def control_named(name):
    """A PowerControl by the ``name`` a state file recorded ("nvpmodel", "governor", "none")."""
    for family in FAMILIES:
        for control in family.power_controls:
            if control.name == name:
                return control(detect_board())
    return NoPowerControl(detect_board())


def inventory_examples():
    """One inventory board name per family, for help texts ("jetson-nano", "rpi4", ...)."""
    return [family.inventory_example for family in FAMILIES if family.inventory_example]


def default_power_modes(inventory_board):
    """{mode: spec} for a host whose inventory names no power modes; {} for boards without defaults."""
    family = declared_family(inventory_board)
    return family.default_power_modes(inventory_board) if family is not None else {}


def placeholder_zones():
    """Thermal zones any family knows to be fake; a bare device root has no family to ask."""
    return tuple(zone for family in FAMILIES for zone in family.placeholder_zones)


def power_monitor():
    """(family, source, rails) of the first power monitor found: this device's family asked first."""
    mine = family_for(None)
    for family in [mine] + [f for f in FAMILIES if f is not mine]:
        source, rails = family.power_monitor()
        if rails:
            return family, source, rails
    return None, None, []


def firmware_throttling():
    """This device's family's firmware throttling report, or None where it has none."""
    return family_for(None).firmware_throttling()


def gpu(inventory_board=None):
    """This device's GPU as its family reads it ({"module", "cuda_cores", "clock_hz", ...}), or None."""
    return family_for(None).gpu(inventory_board)
