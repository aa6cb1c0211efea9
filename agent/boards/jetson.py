"""NVIDIA Jetson: everything farm knows about the family, each JetPack generation's layout included.

- Recognised by its device-tree model ("NVIDIA Jetson Nano Developer Kit") or,
  without one, by ``/etc/nv_tegra_release`` beside an installed ``nvpmodel``.
- Power: an nvpmodel mode (``nvpmodel -m ID``), with ``jetson_clocks`` as a
  separate on/off setting and the cpufreq governor as an optional third.
- Default power modes per module, by the nvpmodel ids NVIDIA documents for it.
- Power monitor: the INA3221 rails; JetPack 4 (Nano, TX1/TX2) through the
  ina3221x IIO driver, JetPack 5 and later through the upstream hwmon driver.
- GPU: which GPU each module has and its devfreq clock, load and rail (``jetson_gpu``).
- Thermal quirk: the PMIC-Die zone has no sensor and always reads 100 °C.
- ``l4t_release``: the L4T version results carry, so JetPacks never mix unnoticed.
"""

import os
import re

from .. import probe_cache, tools
from ..errors import PowerError
from ..restore_state import remove, root_tag
from ..sysfs import cpufreq, cpus_online, find, governors, int_or_none, read_stripped, read_text, root_path
from . import jetson_gpu
from .base import BoardFamily, PowerControl, measure, on_off
from .governor import GovernorControl, one_governor

TEGRA_RELEASE = "etc/nv_tegra_release"
# nvpmodel ids per module (NVIDIA's "Supported Modes and Power Efficiency" tables); the longest
# inventory-name prefix wins. The Nano's MAXN is its 10 W mode.
DEFAULT_MODES = {
    "jetson-nano": {"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}},
    "jetson-agx-orin": {"MAXN": {"nvpmodel": 0}, "15W": {"nvpmodel": 1}, "30W": {"nvpmodel": 2},
                        "50W": {"nvpmodel": 3}},
    "jetson-orin-nx": {"MAXN": {"nvpmodel": 0}, "10W": {"nvpmodel": 1}, "15W": {"nvpmodel": 2},
                       "25W": {"nvpmodel": 3}},
    "jetson-agx-xavier": {"MAXN": {"nvpmodel": 0}, "10W": {"nvpmodel": 1}, "15W": {"nvpmodel": 2}},
}


# L4T release -> JetPack (NVIDIA's release table); unknown releases show as L4T only.
JETPACK_OF_L4T = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1", "32.6.1": "4.6",
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
}
# Patterns are compiled (and kept by re) when first used: most boards read none of them.
L4T_LINE = r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)"


def parse_l4t(text):
    """'32.7.1' from an nv_tegra_release line ('# R32 (release), REVISION: 7.1, ...') anywhere in ``text``."""
    match = re.search(L4T_LINE, text or "")
    if not match:
        return None
    release = "{}.{}".format(match.group(1), match.group(2))
    return release if release.count(".") >= 2 else release + ".0"


def jetpack_of(l4t):
    """The JetPack an L4T release belongs to ('35.4.1' -> '5.1.2'), or None for a release not in the table."""
    if l4t is None:
        return None
    short = re.sub(r"\.0\Z", "", l4t)  # the table writes 32.5, facts say 32.5.0 (str.removesuffix is 3.9+)
    return JETPACK_OF_L4T.get(l4t) or JETPACK_OF_L4T.get(short)


def l4t_release():
    """'32.7.1' from /etc/nv_tegra_release's first line, else None."""
    first = (read_text(TEGRA_RELEASE) or "").splitlines()[:1]
    return parse_l4t(first[0]) if first else None


def clocks_pinned():
    """True when every online CPU runs with min == max, which is what jetson_clocks does.

    Read from sysfs rather than ``jetson_clocks --show``: the script refuses to
    show anything unless it runs as root, and it only prints these same files.
    """
    pinned = []
    for cpu in cpus_online():
        low, high = int_or_none(cpufreq(cpu, "scaling_min_freq")), int_or_none(cpufreq(cpu, "scaling_max_freq"))
        if low is not None and high is not None:
            pinned.append(low == high)
    return bool(pinned) and all(pinned)


def find_rails():
    """(source, [(rail name, {"power"|"voltage"|"current": file})]) of the INA3221 rails, or (None, []).

    JetPack 4 (Nano, TX1/TX2): the ina3221x IIO driver with ``rail_name_N`` and
    ``in_powerN_input`` in mW. JetPack 5 and later: the upstream ina3221 hwmon
    driver with ``inN_label``, ``inN_input`` in mV and ``currN_input`` in mA.
    """
    rails = []
    for folder in sorted(find(root_path("sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for channel in range(3):
            name = read_stripped(os.path.join(folder, "rail_name_{}".format(channel)))
            if name:
                rails.append((name, {kind: os.path.join(folder, "in_{}{}_input".format(kind, channel))
                                     for kind in ("power", "voltage", "current")}))
    if rails:
        return "ina3221x", rails
    for folder in sorted(find(root_path("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))):
        for channel in (1, 2, 3):
            name = read_stripped(os.path.join(folder, "in{}_label".format(channel)))
            if name and name.upper() != "NC":
                rails.append((name, {"voltage": os.path.join(folder, "in{}_input".format(channel)),
                                     "current": os.path.join(folder, "curr{}_input".format(channel))}))
    return ("ina3221", rails) if rails else (None, [])


NVPMODEL_CONF = "etc/nvpmodel.conf"  # what nvpmodel parses unless given --conf (a link to the module's file)


class JetsonDriver(PowerControl):
    """nvpmodel modes, with jetson_clocks as a separate on/off setting."""

    name = "nvpmodel"
    spec_types = (("nvpmodel", (int,)), ("jetson_clocks", (bool,)))
    identity_key = "nvpmodel"
    MODE_LINE = r"POWER_MODEL:\s*ID=(\d+)\s+NAME=(\S+)"

    def __init__(self, board=None):
        PowerControl.__init__(self, board)
        self.governor = GovernorControl()
        self._modes = None

    @classmethod
    def label(cls, measured):
        """"5W (nvpmodel 1)": the name nvpmodel reports and its id, which is what a mode really is."""
        return "{} (nvpmodel {})".format(measured.get("name"), measured["nvpmodel"])

    def _tool(self, name):
        path = tools.find_tool(name)
        if path is None:
            raise PowerError("{} is not installed (not on PATH nor in {}); it comes with L4T "
                             "(nvidia-l4t-tools)".format(name, ", ".join(tools.TOOL_DIRS)))
        return path

    def _remedy(self):
        return [p for p in (tools.find_tool("nvpmodel"), tools.find_tool("jetson_clocks")) if p]

    def modes(self):
        """[{"id": 0, "name": "MAXN"}, ...] from ``nvpmodel -p --verbose`` (parses, changes nothing)."""
        if self._modes is None:
            nvpmodel = self._tool("nvpmodel")
            # The list is nvpmodel's parse of its config file: asked again only when either changes.
            self._modes = probe_cache.cached_for_files(
                "nvpmodel-modes", [nvpmodel, root_path(NVPMODEL_CONF)], lambda: self._parse_modes(nvpmodel))
        return self._modes

    def _parse_modes(self, nvpmodel):
        _, out, err = tools.run_tool([nvpmodel, "-p", "--verbose"])
        # NVPM VERB lines go to stdout on some releases and stderr on others.
        return [{"id": int(m.group(1)), "name": m.group(2)}
                for m in (re.search(self.MODE_LINE, line) for line in (out + "\n" + err).splitlines()) if m]

    def query(self):
        """(id, name) from ``nvpmodel -q``: "NV Power Mode: <name>" then the id on the next line.

        Run unprivileged first: the query works for any user on a real Jetson,
        even though it may add "NVPM ERROR ... : 13" lines about files it cannot open.
        """
        nvpmodel = self._tool("nvpmodel")
        for privileged in (False, True):
            if privileged and not tools.needs_sudo():
                break
            _, out, err = tools.run_tool([nvpmodel, "-q"], privileged=privileged, remedy_commands=self._remedy())
            parsed = self._parse_query(out + "\n" + err)
            if parsed:
                return parsed
        raise PowerError("cannot read the power mode: `nvpmodel -q` printed no 'NV Power Mode' line:\n"
                         + (out + err).strip())

    @staticmethod
    def _parse_query(text):
        lines = [line.strip() for line in text.splitlines()]
        for index, line in enumerate(lines):
            if "NV Power Mode:" in line:
                name = line.split("NV Power Mode:", 1)[1].strip()
                for following in lines[index + 1:]:
                    if following.isdigit():
                        return int(following), name
                    if following:
                        break
        return None

    def current_mode(self):
        mode_id, mode_name = self.query()
        found = governors()
        return {"driver": self.name, "name": mode_name, "nvpmodel": mode_id, "jetson_clocks": clocks_pinned(),
                "governor": one_governor(found), "governors": found}
    def resolve(self, spec):
        """The nvpmodel id a spec asks for: its ``nvpmodel``, else the mode named like the spec."""
        wanted = spec.get("nvpmodel")
        modes = self.modes()
        listing = ", ".join("{} ({})".format(m["id"], m["name"]) for m in modes) or "none listed"
        if wanted is None:
            named = [m["id"] for m in modes if m["name"].lower() == str(spec.get("name", "")).lower()]
            if not named:
                return None
            wanted = named[0]
        if modes and wanted not in [m["id"] for m in modes]:
            raise PowerError("power mode '{}' asks for nvpmodel mode {}, which this board does not have; "
                             "its modes are: {}".format(spec.get("name"), wanted, listing))
        return wanted

    def save(self, state_dir):
        """Record the mode and store the clocks with ``jetson_clocks --store`` before any change."""
        saved = self.current_mode()
        saved["clocks_file"] = None
        jetson_clocks = tools.find_tool("jetson_clocks")
        if jetson_clocks:
            clocks_file = os.path.join(state_dir, "jetson_clocks-{}.conf".format(root_tag()))
            remove(clocks_file)  # --store asks before overwriting; with stdin at EOF it would refuse
            code, out, err = tools.run_tool([jetson_clocks, "--store", clocks_file], privileged=True,
                                      remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("`jetson_clocks --store {}` failed: {}".format(clocks_file, (out + err).strip()))
            saved["clocks_file"] = clocks_file
        return saved

    def check(self, spec):
        """Refuse a spec this board cannot take before anything is recorded or changed."""
        target = self.resolve(spec)
        if target is None and spec.get("jetson_clocks") is None and not spec.get("governor"):
            raise PowerError("power mode '{}' names no nvpmodel mode, jetson_clocks or governor, and no nvpmodel "
                             "mode is called that; this board's modes are: {}".format(
                                 spec.get("name"), ", ".join("{} ({})".format(m["id"], m["name"])
                                                             for m in self.modes())))
        return target

    def set_mode(self, spec):
        target = self.check(spec)
        current_id = self.query()[0]
        # Applying an nvpmodel mode rewrites every clock's min and max, which is
        # also how jetson_clocks' pinned minimums get undone.
        unpin = spec.get("jetson_clocks") is False and clocks_pinned()
        if target is not None and (target != current_id or unpin):
            self.set_nvpmodel(target)
        elif unpin:
            self.set_nvpmodel(current_id)
        if spec.get("jetson_clocks"):
            code, out, err = tools.run_tool([self._tool("jetson_clocks")], privileged=True, remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("jetson_clocks failed: {}".format((out + err).strip()))
        if spec.get("governor"):
            self.governor.set_all(spec["governor"])

    def set_nvpmodel(self, mode_id):
        code, out, err = tools.run_tool([self._tool("nvpmodel"), "-m", str(mode_id)], privileged=True,
                                  remedy_commands=self._remedy())
        text = (out + "\n" + err).strip()
        if code != 0 or "NVPM ERROR" in text:
            hint = ""
            if "reboot" in text.lower():
                hint = " (this mode needs a reboot on this Jetson; farm does not reboot boards)"
            raise PowerError("`nvpmodel -m {}` failed{}: {}".format(mode_id, hint, text))

    def verify(self, spec):
        measured = measure(self.current_mode())
        target = self.resolve(spec)
        if target is not None and measured["nvpmodel"] != target:
            measured["mismatches"].append("nvpmodel reports mode {} ({}), not {}".format(
                measured["nvpmodel"], measured["name"], target))
        if spec.get("jetson_clocks") is not None and measured["jetson_clocks"] != spec["jetson_clocks"]:
            measured["mismatches"].append("jetson_clocks is {}, expected {}".format(
                "on" if measured["jetson_clocks"] else "off", "on" if spec["jetson_clocks"] else "off"))
        if spec.get("governor"):
            wrong = sorted(cpu for cpu, value in measured["governors"].items() if value != spec["governor"])
            if wrong:
                measured["mismatches"].append("governor of CPU(s) {} is not {}".format(", ".join(wrong),
                                                                                       spec["governor"]))
        measured["ok"] = not measured["mismatches"]
        return measured

    def restore(self, saved):
        if self.query()[0] != saved["nvpmodel"]:
            self.set_nvpmodel(saved["nvpmodel"])
        clocks_file = saved.get("clocks_file")
        if clocks_file and os.path.exists(clocks_file):
            code, out, err = tools.run_tool([self._tool("jetson_clocks"), "--restore", clocks_file], privileged=True,
                                      remedy_commands=self._remedy())
            if code != 0:
                raise PowerError("`jetson_clocks --restore {}` failed: {}".format(clocks_file, (out + err).strip()))
        self.governor.restore(saved.get("governors"))
        now = self.current_mode()
        if now["nvpmodel"] != saved["nvpmodel"] or now["jetson_clocks"] != saved["jetson_clocks"]:
            raise PowerError("the board did not return to its mode: it is at {} ({}) with jetson_clocks {}, "
                             "it was at {} ({}) with jetson_clocks {}".format(
                                 now["nvpmodel"], now["name"], on_off(now["jetson_clocks"]),
                                 saved["nvpmodel"], saved["name"], on_off(saved["jetson_clocks"])))
        if clocks_file:
            remove(clocks_file)


class Jetson(BoardFamily):
    name = "jetson"
    name_hints = ("jetson", "tegra", "nvidia")
    inventory_prefixes = ("jetson",)
    inventory_example = "jetson-nano"
    power_controls = (JetsonDriver,)
    placeholder_zones = ("PMIC-Die",)

    def present(self):
        return tools.find_tool("nvpmodel") is not None and read_text(TEGRA_RELEASE) is not None

    def board_name(self):
        tegra = read_text(TEGRA_RELEASE)
        if tegra:
            return "NVIDIA Jetson (" + tegra.splitlines()[0].strip("# ").strip() + ")"
        return None

    def power_control(self, board=None):
        return JetsonDriver(board)

    def default_power_modes(self, inventory_board):
        lowered = (inventory_board or "").lower()
        matches = sorted((prefix for prefix in DEFAULT_MODES if lowered.startswith(prefix)), key=len)
        return {name: dict(spec) for name, spec in DEFAULT_MODES[matches[-1]].items()} if matches else {}

    def power_monitor(self):
        return find_rails()

    def is_input_rail(self, rail):
        # The rail that feeds the whole module (POM_5V_IN on a Nano, VDD_IN on later Jetsons) is the total.
        upper = rail.upper()
        return upper.endswith("_IN") or upper.startswith("VDD_IN")

    def gpu(self, inventory_board=None):
        found = jetson_gpu.describe(inventory_board)
        if found is not None:
            found["rail"], found["rail_mw"] = self._gpu_rail_now()
        return found

    def _gpu_rail_now(self):
        """(rail, mW) of the INA3221 channel that feeds the GPU, read now; (None, None) without one."""
        from ..conditions import read_rails  # conditions imports the board families: imported when asked

        _, rails = find_rails()
        for name, reading in read_rails([r for r in rails if jetson_gpu.is_gpu_rail(r[0])]).items():
            return name, reading["mw"]
        return None, None

    def is_gpu_rail(self, rail):
        return jetson_gpu.is_gpu_rail(rail)
