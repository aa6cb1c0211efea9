"""What a power mode costs a job, measured in one run on a simulated Jetson Nano (stand-in nvpmodel).

The same tiny CPU job, run through the agent's real ``run_job`` N times each way, interleaved:
  none     no power mode (the board as it is)
  same     10W while the board is at 10W: a query, no switch, no settle
  switch   5W from 10W: save, nvpmodel -m 1, verify, run, restore (settle_seconds 0)
Prints the medians and the ratios to ``none``; the settle delay a real board needs (default 1 s)
comes on top of ``switch`` only, which is why the scheduler groups a host's jobs by mode.

Run:  .venv/bin/python bench/power_modes.py [--jobs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL = Path(os.environ.get("FARM_SHARED_MODELS", REPO.parent / "shared" / "models")) / \
    "mobilenet_v1_0.25_128_quant.tflite"
TIMING = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 3, "min_seconds": 0.0}
SPECS = {"none": None, "same": {"name": "10W", "nvpmodel": 0, "settle_seconds": 0},
         "switch": {"name": "5W", "nvpmodel": 1, "settle_seconds": 0}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=15, help="jobs per variant (default 15)")
    args = parser.parse_args()
    from farm_lab import hardware

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "nano"
        hardware.install_jetson_nano(root)
        # The stand-ins' "#!/usr/bin/env python3" finds this interpreter first: a pyenv shim would add
        # 0.1 s to every call, which a real board's C nvpmodel does not have.
        shim = Path(folder) / "python3-first"
        shim.mkdir()
        (shim / "python3").symlink_to(sys.executable)
        os.environ.update(hardware.standin_env(root, {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}))
        os.environ["FARM_AGENT_DIR"] = str(Path(folder) / "agent")
        os.environ["FARM_NO_SUDO"] = "1"
        from agent.bench import file_sha256, run_job
        from agent.schema import make_job

        sha = file_sha256(str(MODEL))
        seconds: dict[str, list[float]] = {name: [] for name in SPECS}
        for index in range(args.jobs):
            for name, spec in SPECS.items():
                job = make_job(f"bench-{name}-{index}", str(MODEL), sha, timing=TIMING, power=spec)
                started = time.perf_counter()
                result = run_job(job)
                seconds[name].append(time.perf_counter() - started)
                if result["status"] != "succeeded":
                    print(f"{name}: {result['status']}: {result.get('error')}")
                    return 1
        if (root / "var/lib/nvpmodel/status").read_text().strip() != "pmode:0000":
            print("the board was not restored to MAXN")
            return 1
    base = statistics.median(seconds["none"])
    print(f"jobs per variant: {args.jobs} (simulated Jetson Nano, stand-in nvpmodel, settle 0 s)")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<7} median {median * 1000:8.1f} ms   ratio to none {median / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
