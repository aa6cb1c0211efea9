"""The stand-in Edge TPU: a C shared library that plays ``libedgetpu.so.1`` on the simulated lab's hosts.

Source: ``farm_lab/standins/libedgetpu/edgetpu_standin.c`` (ours). ``build()`` compiles it with the
machine's C compiler (``$CC``, else ``cc``/``gcc``) into a cache keyed by the source's hash, once;
``install(root)`` puts it into a device root as the Coral package lays it out
(``usr/lib/<multiarch>/libedgetpu.so.1`` → ``libedgetpu.so.1.0``) with no dpkg record, since no package
installed it. The lab gives each host that has an Edge TPU ``LD_LIBRARY_PATH=<root>/usr/lib/<multiarch>``,
so the dynamic loader finds it there and nowhere else: a real host never sees it.

How TFLite reaches it: ``tflite_runtime.interpreter.load_delegate('libedgetpu.so.1', {'device': 'usb:0'})``
(2.11 and 2.14 alike) calls its ``tflite_plugin_create_delegate``; the delegate claims every
``edgetpu-custom-op`` node, fills their outputs with bytes that depend only on the inputs, and sleeps until
the timing model's time has passed since the invoke began.

Knobs
-----
- ``device`` option: ``""`` (any TPU, PCIe first), ``":N"``, ``"usb"``, ``"usb:N"``, ``"pci"``, ``"pci:N"``,
  the real plugin's forms. TPUs are read from ``$FARM_DEVICE_ROOT`` (``/`` when unset):
  ``sys/bus/usb/devices/*`` with ids ``18d1:9302`` or ``1a6e:089a`` (USB, speed from their ``speed``
  file), ``dev/apex_N`` (PCIe). ``usb:N`` counts in libedgetpu's enumeration order as ``agent/edgetpu.py``
  reproduces it (firmware-waiting devices first, each group in reverse sysfs-path order). No match: the
  create call returns NULL without a message, as the real plugin does, and tflite_runtime raises
  ``ValueError: Failed to load delegate from libedgetpu.so.1``.
- ``FARM_EDGETPU_TIME_SCALE``: multiplies every modelled time (default 1; tests that only need order use
  a small scale to stay fast).
- Device state, shared by every process that opens the TPU:
  ``$FARM_DEVICE_ROOT/var/lib/farm-lab/edgetpu/<usb|pci>-<port|apex_N>.cache`` holds the 16-hex-digit
  identity of the parameters now in the TPU's cache. An invoke holds an exclusive ``flock`` on it for its
  whole simulated duration, so two jobs on one TPU take turns as on hardware, and jobs on two TPUs overlap.
- Cache identity: a co-compiled group's caching token (farm's stand-in compiler embeds the same 8 bytes in
  every model of the group), else a hash of the custom op's data. An invoke whose identity differs from the
  file's pays for loading its on-chip parameters (the swap of SEEDS §3) and writes its own.
- ``edgetpu_version()`` returns ``BuildLabel(farm-lab libedgetpu stand-in, simulated Edge TPU),
  RuntimeVersion(14)``: the agent reads it as pycoral's ``get_runtime_version()`` does, and the words
  "stand-in" mark every result measured on it as simulated. ``farm_standin_device(delegate)`` says which
  device a delegate opened (``"usb 2-1 5000"``).

What the custom op carries (``farm_lab.standin_compiler.custom_data``): ``FARMTPU1``, the group token (8
bytes), on-chip bytes, off-chip bytes, convolution-like operations, dense operations (each u64 little
endian), then the parameters. A model compiled by the real compiler (its executable is opaque) is taken
as: custom data size = parameter bytes, cached up to 7 MiB, ``FOREIGN_OPS_PER_BYTE`` operations per byte.

Timing model (per invoke, in seconds; ``link(b) = 8·b / (speed_Mb/s · 10⁶ · LINK_EFFICIENCY)``)::

    t = nodes · link(INVOKE_BYTES)                 # the USB/PCIe round trip of each Edge TPU subgraph
      + link(input + output bytes)                 # tensors over the port
      + link(off-chip parameter bytes)             # streamed every invoke (the USB2 bend)
      + link(on-chip parameter bytes) if swapped   # another model ran last on this TPU
      + conv_ops / CONV_OPS_PER_SECOND + dense_ops / DENSE_OPS_PER_SECOND

Constants, each with the SEEDS §2 figure it comes from (the conv stack: 128×128, 7×7, 32 filters,
1,644,167,168 operations a layer; farm's stand-in compiler caches 7 MiB, so its 300-layer stack streams
7.7 MB of its 15.0 MB of parameters):

====================  =========  ==================================================================
constant              value      from
====================  =========  ==================================================================
CONV_OPS_PER_SECOND   2.1e12     "Edge TPU reaches ~2.0–2.1 TOPS" (10 layers: 16.4 G ops in 7.8 ms)
DENSE_OPS_PER_SECOND  0.6e9      dense stacks: "~0.6 GOPS vs ~2.5 GOPS on CPU"
LINK_EFFICIENCY       0.79       300 layers: 249.1 ms USB3, 397.0 ms USB2; the 147.9 ms gap is the
                                 off-chip stream at 480 vs 5000 Mb/s
INVOKE_BYTES          36864      10 layers: 7.8 ms USB3, 8.5 ms USB2 (nothing streams: the 0.7 ms gap
                                 is the per-invoke round trip)
PCIE_MBPS             5000       the Dev Board's PCIe link; SEEDS §5: Dev Board and USB Accelerator
                                 "give about the same latency"
FOREIGN_OPS_PER_BYTE  270        MobileNet v1 1.0 224 (569 M multiply-adds, 4.2 M parameters)
====================  =========  ==================================================================

Modelled against the seed (``expected_ms``; tests/test_libedgetpu_standin.py checks the formula):
10 layers 7.9 ms USB3 / 8.6 ms USB2 (seed 7.8 / 8.5); 300 layers 250.6 / 398.3 ms (seed 249.1 / 397.0).
The real MobileNets of SEEDS §2 are not fitted: their CPU-side work is not modelled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "standins" / "libedgetpu" / "edgetpu_standin.c"
LIBRARY = "libedgetpu.so.1"
VERSION_TEXT = "BuildLabel(farm-lab libedgetpu stand-in, simulated Edge TPU), RuntimeVersion(14)"
TIME_SCALE_ENV = "FARM_EDGETPU_TIME_SCALE"
STATE_DIR = "var/lib/farm-lab/edgetpu"

# The timing model's constants: the C source defines the same values (a test compares them).
CONV_OPS_PER_SECOND = 2.1e12
DENSE_OPS_PER_SECOND = 0.6e9
LINK_EFFICIENCY = 0.79
INVOKE_BYTES = 36864
PCIE_MBPS = 5000
FOREIGN_OPS_PER_BYTE = 270.0


class CompilerMissing(RuntimeError):
    """No C compiler on this machine: the lab runs without the stand-in (Edge TPU cells are skipped)."""


def find_compiler() -> str | None:
    """The C compiler the lab builds its stand-ins with: $CC, cc or gcc; None without one."""
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    return None


def compiler() -> str:
    found = find_compiler()
    if found is not None:
        return found
    raise CompilerMissing("the lab's stand-in Edge TPU (libedgetpu.so.1) is built from C source and this machine "
                          "has no C compiler (tried $CC, cc, gcc): install one (sudo apt-get install gcc) and run "
                          "'farm lab up' again; until then Edge TPU cells in the lab are skipped")


def build(cache: Path) -> Path:
    """The compiled stand-in in ``cache`` (built once per source version; safe if two labs build at once)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = Path(cache) / "libedgetpu-standin" / f"libedgetpu-standin-{digest}.so"
    if target.is_file():
        return target
    cc = compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-Wno-format-truncation",
                           "-o", str(temporary), str(SOURCE)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the stand-in libedgetpu with {cc} failed: {done.stderr.strip()[-2000:]}")
    temporary.chmod(0o755)
    temporary.replace(target)  # atomic: a concurrent build leaves one whole file
    return target


def install(root: Path | str, built: Path, multiarch: str = "x86_64-linux-gnu") -> Path:
    """Put the stand-in into the device root ``root``; returns the folder to put on LD_LIBRARY_PATH."""
    folder = Path(root) / "usr" / "lib" / multiarch
    folder.mkdir(parents=True, exist_ok=True)
    real = folder / "libedgetpu.so.1.0"
    shutil.copyfile(built, real)
    real.chmod(0o755)
    link = folder / LIBRARY
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(real.name)
    state = Path(root) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    return folder


def link_seconds(byte_count: float, speed_mbps: float) -> float:
    return byte_count * 8 / (speed_mbps * 1e6 * LINK_EFFICIENCY)


def expected_ms(*, speed_mbps: float, conv_ops: float = 0, dense_ops: float = 0, off_chip: float = 0,
                on_chip: float = 0, io_bytes: float = 0, swapped: bool = False, nodes: int = 1) -> float:
    """The time the stand-in takes for one invoke (ms, at time scale 1): the model above, in Python."""
    seconds = (nodes * link_seconds(INVOKE_BYTES, speed_mbps) + link_seconds(io_bytes + off_chip, speed_mbps)
               + (link_seconds(on_chip, speed_mbps) if swapped else 0.0)
               + conv_ops / CONV_OPS_PER_SECOND + dense_ops / DENSE_OPS_PER_SECOND)
    return seconds * 1000
