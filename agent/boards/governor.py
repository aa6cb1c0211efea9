"""The cpufreq governor as a power mode: what every Linux board with cpufreq can set, whatever else its family has."""

import os

from .. import tools
from ..errors import PowerError
from ..sysfs import CPU_DIR, cpufreq, cpufreq_path, cpus_online, find, governors, root_path
from .base import PowerControl, measure


def has_governors():
    for path in find(root_path(CPU_DIR + "/cpu*/cpufreq/scaling_governor")):
        digit = os.path.basename(os.path.dirname(os.path.dirname(path)))[3:4]
        if digit and digit in "0123456789":  # cpu[0-9]*: find knows only "*"
            return True
    return False


def one_governor(found):
    """The governor all CPUs share, else the distinct ones joined by commas, else None."""
    values = sorted(set(found.values()))
    return values[0] if len(values) == 1 else (",".join(values) or None)


class GovernorControl(object):
    """Reads and writes the governor of every online CPU."""

    def available(self):
        for cpu in cpus_online():
            text = cpufreq(cpu, "scaling_available_governors")
            if text:
                return text.split()
        return []

    def set_all(self, governor):
        offered = self.available()
        if offered and governor not in offered:
            raise PowerError("cpufreq governor '{}' is not available on this board; it offers: {}".format(
                governor, ", ".join(offered)))
        targets = sorted(governors())
        if not targets:
            raise PowerError("this board has no cpufreq governor to set (no {})".format(
                cpufreq_path(0, "scaling_governor")))
        for cpu in targets:
            self._write(cpu, governor)

    def restore(self, saved):
        for cpu, governor in sorted((saved or {}).items()):
            if cpufreq(cpu, "scaling_governor") not in (None, governor):
                self._write(cpu, governor)

    def _write(self, cpu, governor):
        path = cpufreq_path(cpu, "scaling_governor")
        try:
            with open(path, "w") as handle:
                handle.write(governor + "\n")
            return
        except (OSError, IOError) as exc:
            if not tools.needs_sudo():
                raise PowerError("cannot set the governor in {}: {}".format(path, exc))
        # sysfs files belong to root: tee is the usual way to write one through sudo.
        tee = tools.find_tool("tee") or "/usr/bin/tee"
        pattern = root_path(CPU_DIR) + "/cpu*/cpufreq/scaling_governor"
        code, _, err = tools.run_tool([tee, path], privileged=True, stdin_text=governor + "\n",
                                      remedy_commands=["{} {}".format(tee, pattern)])
        if code != 0:
            raise PowerError("cannot set the governor in {}: {}".format(path, err.strip()))


class GovernorDriver(PowerControl):
    """Raspberry Pi, Coral Dev Board and any other cpufreq board: the mode is the governor."""

    name = "governor"
    spec_types = (("governor", (str,)),)
    identity_key = "governor"
    # Any other setting belongs to another family's power control: refused, not half-applied.
    OWN_KEYS = ("name", "governor", "settle_seconds")

    def __init__(self, board=None):
        PowerControl.__init__(self, board)
        self.governor = GovernorControl()

    def current_mode(self):
        found = governors()
        governor = one_governor(found)
        return {"driver": self.name, "name": governor, "governor": governor, "governors": found}

    def check(self, spec):
        """The governor a spec asks for (its ``governor``, else its name when that is a governor)."""
        offered = self.governor.available()
        extra = [key for key, value in spec.items() if key not in self.OWN_KEYS and value is not None]
        if extra:
            raise PowerError("power mode '{}' sets {}, which this board ({}) does not have; it takes a "
                             "cpufreq governor: {}".format(spec.get("name"), " and ".join(extra),
                                                            self.board or "unknown board",
                                                            ", ".join(offered) or "none"))
        governor = spec.get("governor") or (spec.get("name") if spec.get("name") in offered else None)
        if not governor:
            raise PowerError("power mode '{}' names no governor; this board's modes are cpufreq governors: "
                             "{}".format(spec.get("name"), ", ".join(offered) or "none"))
        return governor

    def save(self, state_dir):
        return self.current_mode()

    def set_mode(self, spec):
        self.governor.set_all(self.check(spec))

    def verify(self, spec):
        measured = measure(self.current_mode())
        governor = self.check(spec)
        wrong = sorted(cpu for cpu, value in measured["governors"].items() if value != governor)
        if wrong:
            measured["mismatches"].append("governor of CPU(s) {} is not {}".format(", ".join(wrong), governor))
        measured["ok"] = not measured["mismatches"]
        return measured

    def restore(self, saved):
        self.governor.restore(saved.get("governors"))
        now = governors()
        wrong = sorted(cpu for cpu, value in (saved.get("governors") or {}).items()
                       if cpu in now and now[cpu] != value)
        if wrong:
            raise PowerError("governor of CPU(s) {} did not return to {}".format(", ".join(wrong), saved["name"]))


GOVERNOR_MODES = {"performance": {"governor": "performance"}, "powersave": {"governor": "powersave"}}
