"""Interference: was the CPU this benchmark asked for really its own while the timed loop ran?

A ``Meter`` reads a handful of counters right before and right after the timed
loop (never inside it) and turns their differences into the ``interference``
sub-document of the result:

- ``cpu_share``: the benchmark's share of the CPU it wanted. Per thread, the
  kernel counts the time it ran and the time it sat runnable on a run queue
  waiting for a CPU (``/proc/self/task/*/schedstat``: "time spent on the cpu",
  "time spent waiting on a runqueue"). share = ran / (ran + waited): 1.0 when no
  one stood in its way, about 0.5 when a process of the same priority shares its
  core. A thread that sleeps (waiting on an Edge TPU, or a worker with nothing
  to do) is not runnable and does not count against it. Without schedstat
  (a kernel built without it) the share falls back to the process's CPU time
  (``os.times``) over wall time × threads, which only means something for
  CPU-bound jobs.
- ``other_load``: cores used by everyone else on the CPUs the benchmark may run
  on (``/proc/stat`` busy time on those CPUs, less the benchmark's own CPU time),
  against the cores it left free (CPUs allowed − threads). /proc/stat counts
  clock ticks (1/100 s) per CPU, so a loop of a few ticks cannot resolve it:
  ``other_load_resolution`` (CPUs / ticks per second / wall) is taken off before
  it is judged.
- context switches (``getrusage``: involuntary ones are preemptions), steal time
  (a hypervisor running someone else: the ``steal`` column of ``/proc/stat``),
  CPU pressure where the kernel has PSI (``/proc/pressure/cpu``, system-wide
  "some" stall time), and the clocks (cpufreq cur vs max on those CPUs).

A result is ``disturbed`` when any configured threshold (``DEFAULT_THRESHOLDS``,
overridable per job through the job's ``interference`` object) is broken, with
every broken one in ``disturbed_reason``. Reading these files costs well under
a millisecond (``measure_cost_s`` in the document); the timed loop never waits
on it. pyperf does the same kind of check around its runs (system load, CPU
frequency) and warns; farm records it with every result.
"""

import glob
import os
import resource
import time

from . import priority
from .sysfs import read_text

__all__ = ["DEFAULT_THRESHOLDS", "Meter", "judge", "thresholds_for"]

# What "disturbed" means, per job. None turns a rule off.
DEFAULT_THRESHOLDS = {
    # The benchmark waited for a CPU more than 20% of the time it wanted one. One other process of the
    # same priority on its core gives about 0.5; short bursts of a busy shell stay above 0.9.
    "min_cpu_share": 0.8,
    # Others used more than the cores the job left free plus half a core (0.5) on the CPUs it may run on.
    "max_other_load": 0.5,
    # A hypervisor gave more than 5% of these CPUs' time to other guests.
    "max_steal": 0.05,
    # PSI "some" is system-wide: on a host with more CPUs than the job uses, others waiting for *their*
    # CPUs raise it too, so it is recorded but judges nothing unless a job asks for it.
    "max_cpu_pressure": None,
    # The fastest CPU the job may use ran below 90% of its frequency limit at the end of the loop
    # (the clock heuristic of conditions.throttling, applied to this job's CPUs). CPU jobs only.
    "min_clock_ratio": 0.9,
    # Involuntary context switches per second of loop; off by default (a timer tick preempts too).
    "max_involuntary_per_s": None,
}

_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def thresholds_for(job_settings):
    """The thresholds a job runs with: the defaults, with what the job's ``interference`` object sets."""
    out = dict(DEFAULT_THRESHOLDS)
    out.update(job_settings or {})
    return out


def _allowed_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _proc(path):
    """A /proc file of this machine: /proc is the live kernel's, never the device root's copy."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _cpu_times(cpus):
    """{cpu: {field: jiffies}} from /proc/stat for these CPUs."""
    text = _proc("/proc/stat") or ""
    wanted = {"cpu{}".format(c) for c in cpus}
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in wanted:
            values = [int(v) for v in parts[1:1 + len(_STAT_FIELDS)]]
            values += [0] * (len(_STAT_FIELDS) - len(values))
            found[parts[0]] = dict(zip(_STAT_FIELDS, values))
    return found


def _schedstat():
    """{tid: (ran ns, waited ns)} over this process's threads, or None where the kernel has no schedstat."""
    found = {}
    for path in glob.glob("/proc/self/task/*/schedstat"):
        text = _proc(path)
        if not text:
            continue
        parts = text.split()
        if len(parts) >= 2:
            found[path.split("/")[4]] = (int(parts[0]), int(parts[1]))
    return found or None


def _pressure_us():
    """Total microseconds some task waited for a CPU (PSI), or None where the kernel has no PSI."""
    text = _proc("/proc/pressure/cpu")
    for line in (text or "").splitlines():
        if line.startswith("some"):
            for item in line.split():
                if item.startswith("total="):
                    return int(item[len("total="):])
    return None


def _clock_ratio(cpus):
    """The fastest of these CPUs' cur/max frequency (cpufreq, read below the device root), None without cpufreq."""
    ratios = []
    for cpu in cpus:
        base = "sys/devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        try:
            current, limit = int(read_text(base + "scaling_cur_freq")), int(read_text(base + "scaling_max_freq"))
        except (TypeError, ValueError):
            continue
        if limit > 0:
            ratios.append(current / float(limit))
    return max(ratios) if ratios else None


def _thread_cpu():
    """This thread's CPU time: what reading the counters costs, without the waits a loaded machine adds."""
    try:
        return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    except (AttributeError, OSError):
        return time.perf_counter()


class _Reading(object):
    def __init__(self, cpus):
        started = _thread_cpu()
        self.wall = time.monotonic()
        times = os.times()
        self.cpu_s = times[0] + times[1]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.voluntary, self.involuntary = usage.ru_nvcsw, usage.ru_nivcsw
        self.schedstat = _schedstat()
        self.stat = _cpu_times(cpus)
        self.pressure_us = _pressure_us()
        self.clock_ratio = _clock_ratio(cpus)
        self.cost_s = _thread_cpu() - started


class Meter(object):
    """Readings around a timed loop: ``start()`` right before it, ``stop()`` right after; ``document()``."""

    def __init__(self, threads=1, cpu_bound=True, thresholds=None):
        self.threads = threads
        self.cpu_bound = cpu_bound
        self.thresholds = thresholds_for(thresholds)
        self.cpus = _allowed_cpus()
        self.before = self.after = None

    def start(self):
        self.before = _Reading(self.cpus)
        return self

    def stop(self):
        self.after = _Reading(self.cpus)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        if self.after is None:
            self.stop()

    def document(self):
        """The ``interference`` sub-document (see the module docstring)."""
        before, after = self.before, self.after
        wall = max(after.wall - before.wall, 1e-9)
        own_cpu = after.cpu_s - before.cpu_s
        doc = {
            "wall_s": wall,
            "threads": self.threads,
            "cpus_allowed": list(self.cpus),
            "process_cpu_s": own_cpu,
            # CPU time against wall × threads: near 1 for a CPU-bound loop that had its cores.
            "cpu_utilization": own_cpu / (wall * self.threads),
            "voluntary_switches": after.voluntary - before.voluntary,
            "involuntary_switches": after.involuntary - before.involuntary,
            "involuntary_per_s": (after.involuntary - before.involuntary) / wall,
        }
        doc.update(_share(before.schedstat, after.schedstat, doc["cpu_utilization"]))
        # schedstat counts in ns; os.times in clock ticks, too coarse for a loop of a few ticks.
        ran = doc.get("ran_s")
        doc.update(_others(before.stat, after.stat, own_cpu if ran is None else ran, wall, len(self.cpus),
                           self.threads))
        if before.pressure_us is not None and after.pressure_us is not None:
            doc["cpu_pressure"] = (after.pressure_us - before.pressure_us) / 1e6 / wall
        doc["clock_ratio"] = after.clock_ratio
        doc["measure_cost_s"] = before.cost_s + after.cost_s
        doc["priority"] = priority.describe()
        doc["thresholds"] = dict(self.thresholds)
        reasons = judge(doc, self.thresholds, self.cpu_bound)
        doc["disturbed"] = bool(reasons)
        doc["disturbed_reason"] = "; ".join(reasons) if reasons else None
        return doc


def _share(before, after, utilization):
    if before is None or after is None:
        return {"cpu_share": min(1.0, utilization), "cpu_share_source": "cpu time / (wall x threads)"}
    ran = waited = 0
    for tid, (run_ns, wait_ns) in after.items():
        start_run, start_wait = before.get(tid, (0, 0))  # a thread born during the loop counts from zero
        ran += run_ns - start_run
        waited += wait_ns - start_wait
    wanted = ran + waited
    return {"cpu_share": ran / float(wanted) if wanted > 0 else 1.0, "cpu_share_source": "schedstat",
            "ran_s": ran / 1e9, "waited_s": waited / 1e9}


def _others(before, after, own_cpu, wall, cpus, threads):
    """Cores busy with others on the allowed CPUs, and the steal fraction, from /proc/stat's jiffies."""
    if not before or not after:
        return {}
    hertz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    busy = steal = total = 0
    for cpu, now in after.items():
        then = before.get(cpu)
        if then is None:
            continue
        delta = {k: now[k] - then[k] for k in _STAT_FIELDS}
        steal += delta["steal"]
        busy += delta["user"] + delta["nice"] + delta["system"] + delta["irq"] + delta["softirq"]
        total += sum(delta.values())
    other_cpu = max(0.0, busy / hertz - own_cpu)
    # /proc/stat counts whole clock ticks per CPU: over a short loop that alone can read as cores of load.
    resolution = cpus / hertz / wall
    return {"other_cpu_s": other_cpu, "other_load": other_cpu / wall, "other_load_resolution": resolution,
            "free_cores": max(0, cpus - threads), "steal": (steal / float(total)) if total else 0.0}


def judge(doc, thresholds, cpu_bound=True):
    """The broken thresholds, in words; [] when the loop ran undisturbed."""
    reasons = []
    share, limit = doc.get("cpu_share"), thresholds.get("min_cpu_share")
    # The fallback share (CPU time / wall) is low by nature for a job whose CPU waits on an accelerator.
    if limit is not None and share is not None and share < limit and (
            cpu_bound or doc.get("cpu_share_source") == "schedstat"):
        reasons.append("cpu_share {:.2f} < {:.2f} (waited for a CPU {:.0f}% of the time it wanted one)".format(
            share, limit, (1 - share) * 100))
    load, limit = doc.get("other_load"), thresholds.get("max_other_load")
    # Judged with the benefit of the doubt: less the tick resolution (a short loop cannot tell much).
    if limit is not None and load is not None and \
            load - doc.get("other_load_resolution", 0.0) > doc.get("free_cores", 0) + limit:
        reasons.append("other processes used {:.2f} cores of the {} it may run on ({} free)".format(
            load, len(doc.get("cpus_allowed") or []), doc.get("free_cores", 0)))
    steal, limit = doc.get("steal"), thresholds.get("max_steal")
    if limit is not None and steal is not None and steal > limit:
        reasons.append("steal {:.0f}% > {:.0f}%".format(steal * 100, limit * 100))
    pressure, limit = doc.get("cpu_pressure"), thresholds.get("max_cpu_pressure")
    if limit is not None and pressure is not None and pressure > limit:
        reasons.append("cpu pressure {:.0f}% > {:.0f}%".format(pressure * 100, limit * 100))
    ratio, limit = doc.get("clock_ratio"), thresholds.get("min_clock_ratio")
    if cpu_bound and limit is not None and ratio is not None and ratio < limit:
        reasons.append("clock at {:.0f}% of its limit < {:.0f}%".format(ratio * 100, limit * 100))
    rate, limit = doc.get("involuntary_per_s"), thresholds.get("max_involuntary_per_s")
    if limit is not None and rate is not None and rate > limit:
        reasons.append("{:.0f} involuntary context switches/s > {:.0f}".format(rate, limit))
    return reasons
