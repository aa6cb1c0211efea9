"""The conditions a result was measured under: temperatures, CPU clocks, throttling, power.

``snapshot()`` reads them once (before and after a run); a ``PowerSampler``
runs beside the timed loop and gives the average power and the energy per
inference. Everything is read below the device root, and what only some boards
have (a power monitor, firmware throttling flags, fake thermal zones) is asked
of the board's family (``agent/boards``), so a simulated board answers through
the same code.
"""

import os
import time

from . import boards
from .boards.raspberry_pi import decode_throttled
from .sysfs import cpus_online, find, read_text, root_path
from .sysfs import int_or_none as _int
from .sysfs import read_stripped as _read

__all__ = ["PowerSampler", "cpu_frequencies", "decode_throttled", "gpu_clock", "power", "read_rails", "snapshot",
           "temperatures", "throttling", "total_mw"]

# A CPU this far below its frequency limit while a benchmark loads it counts as throttled.
CLOCK_SLACK = 0.9


# --- temperatures and clocks --------------------------------------------------------------------------

def _zones():
    # /sys/class/thermal links to /sys/devices/virtual/thermal; either may be all a board (or a copy) has.
    for pattern in ("sys/class/thermal/thermal_zone*", "sys/devices/virtual/thermal/thermal_zone*"):
        found = sorted(find(root_path(pattern)), key=lambda p: _int(p.rsplit("zone", 1)[1]) or 0)
        if found:
            return found
    return []


def temperatures():
    """{zone type: °C} from the thermal zones (millidegrees in sysfs); unreadable zones are left out."""
    found = {}
    for folder in _zones():
        kind = _read(os.path.join(folder, "type")) or os.path.basename(folder)
        millidegrees = _int(_read(os.path.join(folder, "temp")))
        # A zone without a sensor reads an error or a sentinel such as -40000 or -125000.
        if millidegrees is None or millidegrees <= -40000:
            continue
        key = kind if kind not in found else "{} ({})".format(kind, os.path.basename(folder))
        found[key] = millidegrees / 1000.0
    return found


def cpu_frequencies():
    """{cpu: {"cur_khz", "max_khz", "hw_max_khz"}} for the online CPUs that have cpufreq."""
    found = {}
    for cpu in cpus_online():
        base = "sys/devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        current = _int(read_text(base + "scaling_cur_freq"))
        if current is None:
            continue
        found[str(cpu)] = {"cur_khz": current, "max_khz": _int(read_text(base + "scaling_max_freq")),
                           "hw_max_khz": _int(read_text(base + "cpuinfo_max_freq"))}
    return found


# --- throttling ---------------------------------------------------------------------------------------

def _cooling_reasons():
    """Thermal cooling devices that act on CPU clocks and are engaged (cur_state > 0)."""
    reasons = []
    for folder in sorted(find(root_path("sys/class/thermal/cooling_device*"))):
        kind = _read(os.path.join(folder, "type")) or ""
        state = _int(_read(os.path.join(folder, "cur_state")))
        if "cpu" in kind.lower() and state:
            reasons.append("cooling device {} ({}) at state {}/{}".format(
                os.path.basename(folder), kind, state, _read(os.path.join(folder, "max_state")) or "?"))
    return reasons


def throttling(under_load=False):
    """Is the board throttling? {"throttled": bool, "method": ..., "reasons": [...], ...}.

    A board whose firmware keeps throttling flags (a Raspberry Pi's ``vcgencmd
    get_throttled``): those, with "now" and "since_boot" lists. Other boards: CPU cooling devices engaged, and,
    only when ``under_load`` (during a run), CPUs running below 90% of their
    frequency limit; a heuristic, since an idle core is slow by design and a run
    that waits on an Edge TPU idles its CPU too.
    """
    firmware = boards.firmware_throttling()
    if firmware is not None and "error" not in firmware:
        firmware.update(method="vcgencmd", reasons=list(firmware["now"]))
        return firmware
    reasons = _cooling_reasons()
    if under_load:
        # Only the cores doing the work run at their limit; idle ones may sit low by design
        # (per-core clocks, or a job on fewer threads than cores). So the board counts as
        # clocked down when even its fastest core is well below its limit.
        clocks = [(cpu, c) for cpu, c in sorted(cpu_frequencies().items())
                  if c.get("max_khz") and c.get("cur_khz") is not None]
        if clocks and all(c["cur_khz"] < CLOCK_SLACK * c["max_khz"] for _, c in clocks):
            cpu, clock = max(clocks, key=lambda item: item[1]["cur_khz"] / item[1]["max_khz"])
            reasons.append("fastest core cpu{} at {} kHz, below its limit {} kHz under load".format(
                cpu, clock["cur_khz"], clock["max_khz"]))
    result = {"method": "heuristic", "throttled": bool(reasons), "reasons": reasons}
    if firmware is not None:
        result["error"] = firmware["error"]
    return result


# --- power (the board family's power monitor) ------------------------------------------------------

def read_rails(rails):
    """{rail: {"mw", "mv", "ma"}}; mW computed from mV x mA where the driver gives no power file."""
    readings = {}
    for name, files in rails:
        millivolts, milliamps = _int(_read(files.get("voltage", ""))), _int(_read(files.get("current", "")))
        milliwatts = _int(_read(files["power"])) if files.get("power") else None
        if milliwatts is None and millivolts is not None and milliamps is not None:
            milliwatts = round(millivolts * milliamps / 1000.0)
        readings[name] = {"mw": milliwatts, "mv": millivolts, "ma": milliamps}
    return readings


def total_mw(readings, family=None):
    """(mW, rail name) of the board's input rail (as its family names it), else the sum of all rails ("sum")."""
    for name, reading in readings.items():
        if family is not None and family.is_input_rail(name) and reading["mw"] is not None:
            return reading["mw"], name
    values = [r["mw"] for r in readings.values() if r["mw"] is not None]
    return (sum(values), "sum") if values else (None, None)


def power():
    """One reading of the power monitor, or None where the board has none."""
    family, source, rails = boards.power_monitor()
    if not rails:
        return None
    readings = read_rails(rails)
    milliwatts, rail = total_mw(readings, family)
    return {"source": source, "rails": readings, "total_mw": milliwatts, "total_rail": rail}


# --- the snapshot --------------------------------------------------------------------------------------

def snapshot(under_load=False):
    """Everything above, once: put one in a result before the run and one after.

    {"time": 1700000000.0, "temperatures_c": {"CPU-therm": 37.5, ...}, "max_temperature_c": 41.0,
     "cpus_online": [0, 1, 2, 3], "cpu_freq_khz": {"0": {"cur_khz", "max_khz", "hw_max_khz"}},
     "throttling": {...throttling()...}, "throttled": false, "power": {...power()...} or null}
    """
    temps = temperatures()
    throttle = throttling(under_load)
    return {
        "time": time.time(),
        "temperatures_c": temps,
        "max_temperature_c": max([c for k, c in temps.items() if k not in boards.placeholder_zones()] or [None]),
        "cpus_online": cpus_online(),
        "cpu_freq_khz": cpu_frequencies(),
        "throttling": throttle,
        "throttled": throttle["throttled"],
        "power": power(),
        "gpu": gpu_clock(),
    }


def gpu_clock():
    """The GPU's clock, cap and load now ({"clock_hz", "cap_hz", "max_clock_hz", "load_pct"}), or None."""
    found = boards.gpu()
    if found is None:
        return None
    return {key: found.get(key) for key in ("clock_hz", "cap_hz", "max_clock_hz", "load_pct")}


class PowerSampler(object):
    """Samples total power every ``interval`` s in a background thread while a timed loop runs.

    It also checks throttling every ``throttle_every`` s, since a board that
    throttles mid-run produces numbers that are not comparable. ``cpu_bound``
    (a CPU-delegate job) adds the clock heuristic: a loaded core below its limit.
    Leave it off for Edge TPU jobs, whose CPU mostly waits and idles slow. Use::

        with PowerSampler() as sampler:
            ...timed loop...
        summary = sampler.summary(inferences=len(samples))

    What it costs the loop (``bench/harness_overhead.py --cost`` measures it): a wake-up
    alone is 40-80 us of CPU, so with rails to read it is at least 0.2 % of a core (20
    wake-ups a second); without rails (a PC) it wakes only for the throttling check once
    a second (0.1-0.4 ms of globbing and reading sysfs), 0.06-0.1 % of a core. The
    timed loop spends its time in ``invoke()``, which releases the GIL, so it never
    waits for the sampler; the two compete only for a core, when every core is busy.
    """

    def __init__(self, interval=0.05, throttle_every=1.0, cpu_bound=False, first_throttling=None):
        """``first_throttling``: a ``throttling()`` reading taken just before (the job's "before" snapshot).
        A firmware reading there (a Pi's ``vcgencmd``, a process per call) counts as this sampler's first
        check, so the run's start does not read the same flags twice; the next check is
        ``throttle_every`` later. A heuristic reading is not reused: under load it reads the clocks."""
        self.interval = interval
        self.first_throttling = first_throttling
        self.throttle_every = throttle_every
        self.cpu_bound = cpu_bound
        self.family, self.source, self.rails = None, None, []
        self._samples = []  # (monotonic time, total mW, {rail: mW})
        self._throttle_reasons = []
        self._throttle_checks = 0
        self._total_rail = None
        # threading here, not at the top: the facts' snapshot of conditions runs no sampler.
        import threading

        self._stop = threading.Event()
        self._thread = None
        self.started = self.stopped = None

    def start(self):
        self.family, self.source, self.rails = boards.power_monitor()
        self.started = time.monotonic()
        import threading

        self._thread = threading.Thread(target=self._run, name="farm-power-sampler")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self):
        next_throttle = time.monotonic()
        first = self.first_throttling
        if first is not None and first.get("method") == "vcgencmd":
            self._throttle_checks += 1
            self._throttle_reasons.extend(reason for reason in first.get("reasons", ())
                                          if reason not in self._throttle_reasons)
            next_throttle += self.throttle_every
        while True:
            now = time.monotonic()
            if self.rails:
                readings = read_rails(self.rails)
                milliwatts, self._total_rail = total_mw(readings, self.family)
                if milliwatts is not None:
                    self._samples.append((now, milliwatts, {k: v["mw"] for k, v in readings.items()}))
            if now >= next_throttle:
                next_throttle = now + self.throttle_every
                self._throttle_checks += 1
                for reason in throttling(under_load=self.cpu_bound)["reasons"]:
                    if reason not in self._throttle_reasons:
                        self._throttle_reasons.append(reason)
            # Without rails there is nothing to read every interval: a wake-up alone costs 40-80 us of
            # CPU (measured on a loaded 2-core VM), 0.2 % of a core at 20 a second, so wake for the next
            # throttling check only. stop() still ends the wait at once.
            wait = self.interval if self.rails else max(self.interval, next_throttle - time.monotonic())
            if self._stop.wait(wait):
                return

    def stop(self):
        if self._thread is not None and self.stopped is None:
            self._stop.set()
            self._thread.join()
            self.stopped = time.monotonic()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def summary(self, inferences=None, seconds=None):
        """Average power and energy over the sampled window.

        Energy = average W x ``seconds`` (default: the sampler's own window), and
        per inference = that energy in mJ / ``inferences``. Without a power
        monitor, "available" is false and "reason" says why; throttling is
        reported either way.
        """
        self.stop()
        duration = seconds if seconds is not None else (self.stopped or time.monotonic()) - (self.started or 0)
        out = {"interval_s": self.interval, "duration_s": duration, "samples": len(self._samples),
               "throttled": bool(self._throttle_reasons), "throttle_reasons": list(self._throttle_reasons),
               "throttle_checks": self._throttle_checks}
        if not self._samples:
            out.update(available=False, reason=(
                "no INA3221 power monitor under {}".format(root_path("sys/bus/i2c/drivers"))
                if not self.rails else "the power monitor gave no reading"))
            return out
        watts = [mw / 1000.0 for _, mw, _ in self._samples]
        average = sum(watts) / len(watts)
        energy = average * duration
        rails = {}
        for _, _, per_rail in self._samples:
            for name, milliwatts in per_rail.items():
                if milliwatts is not None:
                    rails.setdefault(name, []).append(milliwatts / 1000.0)
        out.update(available=True, source=self.source, rail=self._total_rail,
                   average_w=average, min_w=min(watts), max_w=max(watts), energy_j=energy,
                   rails_average_w={name: sum(v) / len(v) for name, v in rails.items()},
                   inferences=inferences,
                   energy_per_inference_mj=(energy * 1000.0 / inferences) if inferences else None)
        return out
