"""The Jetson family's GPU: which GPU each module has, and its clock, load and rail as sysfs shows them.

Figures are NVIDIA's published module figures (CUDA cores, maximum GPU clock):
Nano 128 cores at 921.6 MHz, TX1 256 at 998.4 MHz, TX2 256 at 1300 MHz, AGX Xavier
512 at 1377 MHz, Xavier NX 384 at 1100 MHz, AGX Orin (64 GB) 2048 at 1300 MHz,
Orin NX (16 GB) 1024 at 918 MHz, Orin Nano (8 GB) 1024 at 625 MHz. Every one of these
GPUs runs FP16 at twice its FP32 rate on the CUDA cores (FMA: 2 operations per core
per clock), which is what ``peak_gflops`` computes; tensor cores are not counted.

Sysfs: the GPU is a devfreq device. JetPack 4 names it by its address
(``/sys/devices/57000000.gpu/devfreq/57000000.gpu`` on the Nano and TX1,
``17000000.gp10b`` on the TX2, ``17000000.gv11b`` on Xavier); JetPack 5 has
``17000000.ga10b`` on Orin and JetPack 6 ``17000000.gpu`` under ``platform``; all of
them are also linked from ``/sys/class/devfreq``. ``cur_freq``/``max_freq`` are in Hz
(``max_freq`` is the cap the power mode sets), ``available_frequencies`` lists the
hardware steps. The load is the GPU device's ``load`` file, in tenths of a percent
(0..1000), also reachable as ``/sys/devices/gpu.0/load`` on JetPack 4.
"""

import os
import re

from ..sysfs import device_tree_compatible, device_tree_model, find, int_or_none, read_stripped, root_path

# (module, device-tree hints, CUDA cores, max GPU clock in Hz, architecture); the first match wins,
# so a specific module (Orin Nano: p3767-0003..0005) comes before the family it shares a carrier with.
GPUS = (
    ("jetson-nano", ("p3450", "p3448", "jetson-nano", "jetson nano"), 128, 921600000, "Maxwell (GM20B)"),
    ("jetson-tx1", ("p2371", "p2180", "jetson-tx1", "jetson_tx1", "jetson tx1"), 256, 998400000, "Maxwell (GM20B)"),
    ("jetson-tx2", ("p2771", "p3310", "p3489", "quill", "jetson-tx2", "jetson tx2", "tegra186"), 256, 1300000000,
     "Pascal (GP10B)"),
    ("jetson-xavier-nx", ("p3668", "xavier nx", "xavier-nx"), 384, 1100000000, "Volta (GV11B)"),
    ("jetson-agx-xavier", ("p2888", "agx xavier", "agx-xavier", "tegra194"), 512, 1377000000,
     "Volta (GV11B)"),
    ("jetson-orin-nano", ("p3767-0003", "p3767-0004", "p3767-0005", "orin nano", "orin-nano"), 1024, 625000000,
     "Ampere (GA10B)"),
    ("jetson-orin-nx", ("p3767", "orin nx", "orin-nx"), 1024, 918000000, "Ampere (GA10B)"),
    ("jetson-agx-orin", ("p3701", "agx orin", "agx-orin", "tegra234"), 2048, 1300000000, "Ampere (GA10B)"),
)
# Names of the GPU's devfreq node across JetPack releases.
DEVFREQ_NAME = r"\A(57000000\.gpu|17000000\.(gp10b|gv11b|ga10b|gpu))\Z"  # compiled by re when first used
DEVFREQ_GLOBS = ("sys/class/devfreq/*", "sys/devices/*/devfreq/*", "sys/devices/platform/*/devfreq/*",
                 "sys/devices/platform/*/*/devfreq/*")
LOAD_FILES = ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load")
FP16_OVER_FP32 = 2.0


def spec_for(*names):
    """{"module", "cuda_cores", "max_clock_hz", "architecture"} of the first GPU a name or hint matches, else None.

    ``names``: inventory board names ("jetson-nano"), device-tree models and compatible strings.
    """
    lowered = " ".join(n.lower() for n in names if n)
    for module, hints, cores, max_hz, arch in GPUS:
        if module in lowered or any(hint in lowered for hint in hints):
            return {"module": module, "cuda_cores": cores, "max_clock_hz": max_hz, "architecture": arch}
    return None


def peak_gflops(cuda_cores, clock_hz, precision="fp32"):
    """The CUDA cores' peak: cores x clock x 2 (one fused multiply-add a clock), doubled for FP16."""
    if not cuda_cores or not clock_hz:
        return None
    fp32 = cuda_cores * clock_hz * 2 / 1e9
    return fp32 * FP16_OVER_FP32 if precision == "fp16" else fp32


def devfreq_dir():
    """The GPU's devfreq folder under the device root, or None."""
    for pattern in DEVFREQ_GLOBS:
        for folder in sorted(find(root_path(pattern))):
            if re.match(DEVFREQ_NAME, os.path.basename(folder)) and os.path.exists(os.path.join(folder, "cur_freq")):
                return folder
    return None


def _load_per_mille(folder):
    # The load file sits on the GPU device, two levels above its devfreq node (devfreq/<name>/../..).
    candidates = [os.path.join(folder, "device", "load"), os.path.join(folder, "..", "..", "load")]
    candidates += [root_path(p) for p in LOAD_FILES]
    for path in candidates:
        value = int_or_none(read_stripped(path))
        if value is not None:
            return value
    return None


def read_clock():
    """{"cur_hz", "cap_hz", "min_hz", "hw_max_hz", "load_pct", "devfreq"} now, or None without a GPU devfreq node."""
    folder = devfreq_dir()
    if folder is None:
        return None
    steps = [int_or_none(s) for s in (read_stripped(os.path.join(folder, "available_frequencies")) or "").split()]
    steps = [s for s in steps if s]
    load = _load_per_mille(folder)
    return {"cur_hz": int_or_none(read_stripped(os.path.join(folder, "cur_freq"))),
            "cap_hz": int_or_none(read_stripped(os.path.join(folder, "max_freq"))),
            "min_hz": int_or_none(read_stripped(os.path.join(folder, "min_freq"))),
            "hw_max_hz": max(steps) if steps else None,
            "load_pct": load / 10.0 if load is not None else None,
            "devfreq": os.path.basename(folder)}


def is_gpu_rail(name):
    """Whether an INA3221 rail feeds the GPU (POM_5V_GPU on a Nano, VDD_GPU_SOC / VDD_CPU_GPU_CV on later ones)."""
    return "GPU" in (name or "").upper()


def describe(inventory_board=None):
    """The GPU facts: module figures, the clock now, and the peaks at the maximum clock; None without a GPU."""
    clock = read_clock()
    spec = spec_for(inventory_board, device_tree_model(), *device_tree_compatible())
    if clock is None and spec is None:
        return None
    out = dict(spec or {"module": None, "cuda_cores": None, "max_clock_hz": None, "architecture": None})
    clock = clock or {}
    # The hardware's own top step wins over the table: a module variant the table lumps with another
    # (AGX Orin 32 GB at 930 MHz) still reports the clock it can reach.
    if clock.get("hw_max_hz"):
        out["max_clock_hz"] = clock["hw_max_hz"]
    out.update(clock_hz=clock.get("cur_hz"), cap_hz=clock.get("cap_hz"), load_pct=clock.get("load_pct"),
               devfreq=clock.get("devfreq"))
    out["peak_fp32_gflops"] = peak_gflops(out["cuda_cores"], out["max_clock_hz"], "fp32")
    out["peak_fp16_gflops"] = peak_gflops(out["cuda_cores"], out["max_clock_hz"], "fp16")
    return out
