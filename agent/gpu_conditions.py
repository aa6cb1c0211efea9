"""The GPU's side of a result: its clock and load sampled while the timed loop runs, and its rail's power.

A GPU result is only comparable with a peak when one knows the clock it ran at:
devfreq lowers the clock when the GPU idles, nvpmodel caps it, and thermal
throttling pulls it down. ``GpuSampler`` reads the clock and load beside the
loop (as ``conditions.PowerSampler`` reads the rails), and ``summarize`` turns the
samples into the result's ``gpu`` sub-document: the clock it ran at, the
peaks at that clock, and ``below_max`` when any sample was under the GPU's
maximum clock, so the report can tell a slow GPU from a slowed one.
"""

import threading

from . import boards
from .boards.jetson_gpu import peak_gflops

__all__ = ["GpuSampler", "gpu_rail_w", "summarize"]


def gpu_rail_w(power_summary, family=None):
    """(rail, average W) of the GPU's own power rail from a ``PowerSampler.summary``, else (None, None)."""
    averages = (power_summary or {}).get("rails_average_w") or {}
    family = family or boards.family_for(None)
    for rail in sorted(averages):
        if family.is_gpu_rail(rail):
            return rail, averages[rail]
    return None, None


def summarize(gpu, samples, power_summary=None, family=None):
    """The result's ``gpu`` sub-document from the GPU facts and (clock Hz, load %) samples.

    ``below_max`` is true when any sampled clock was under the GPU's maximum clock (the
    hardware's top step), with the reason; the peaks are computed at the mean sampled clock.
    """
    doc = {key: gpu.get(key) for key in ("module", "architecture", "cuda_cores", "max_clock_hz", "cap_hz")}
    clocks = [c for c, _ in samples if c]
    loads = [load for _, load in samples if load is not None]
    clock = sum(clocks) / len(clocks) if clocks else gpu.get("clock_hz")
    doc.update(samples=len(samples), clock_hz=clock, clock_min_hz=min(clocks) if clocks else gpu.get("clock_hz"),
               load_mean_pct=sum(loads) / len(loads) if loads else None, load_max_pct=max(loads) if loads else None)
    lowest, top = doc["clock_min_hz"], doc["max_clock_hz"]
    doc["below_max"] = bool(lowest and top and lowest < top)
    doc["below_max_reason"] = ("GPU clock went down to {:.1f} MHz, below its maximum {:.1f} MHz{}".format(
        lowest / 1e6, top / 1e6, " (capped at {:.1f} MHz)".format(doc["cap_hz"] / 1e6)
        if doc.get("cap_hz") and doc["cap_hz"] < top else "") if doc["below_max"] else None)
    doc["peak_fp32_gflops"] = peak_gflops(doc["cuda_cores"], clock, "fp32")
    doc["peak_fp16_gflops"] = peak_gflops(doc["cuda_cores"], clock, "fp16")
    doc["rail"], doc["rail_w"] = gpu_rail_w(power_summary, family)
    return doc


class GpuSampler(object):
    """Reads the GPU clock and load every ``interval`` s in a thread while the timed loop runs.

    Use as ``with GpuSampler() as gpu: ...loop...`` then ``gpu.summary(power_summary)``;
    ``gpu.present`` is false on a board without a GPU, and the summary is then None.
    """

    def __init__(self, interval=0.1):
        self.interval = interval
        self.gpu = None
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    @property
    def present(self):
        return self.gpu is not None

    def _sample(self):
        now = boards.gpu() or {}
        self.samples.append((now.get("clock_hz"), now.get("load_pct")))

    def start(self):
        self.gpu = boards.gpu()
        if self.gpu is not None:
            self._thread = threading.Thread(target=self._run, name="farm-gpu-sampler")
            self._thread.daemon = True
            self._thread.start()
        return self

    def _run(self):
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def stop(self):
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()  # the clock as the loop ended, so a short loop still has two readings
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def summary(self, power_summary=None):
        self.stop()
        if self.gpu is None:
            return None
        return summarize(self.gpu, self.samples, power_summary)
