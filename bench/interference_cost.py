"""What measuring interference costs a timed loop, measured in one run on a real model.

The agent reads its counters (schedstat, /proc/stat, getrusage, PSI, cpufreq: agent/interference.py)
once right before and once right after the timed loop, never inside it. This script times the same
loaded model through the agent's own ``time_invokes`` N times each way, interleaved:
  bare     time_invokes without a meter
  metered  time_invokes with an interference.Meter, as every farm job runs it
and prints, per variant, the median of the loops' median latencies and their ratio (goal: within the
noise, the meter adds nothing inside the loop), and the meter's own cost: the CPU time its two readings
took, against the timed loop's length (goal: below 0.5%).

Run:  .venv/bin/python bench/interference_cost.py [--loops 21] [--model PATH] [--min-seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = Path(os.environ.get("FARM_SHARED_MODELS", REPO.parent / "shared" / "models"))
DEFAULT_MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", type=int, default=21, help="timed loops per variant (default 21)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="each loop's min_seconds (farm's default 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from agent import backends, interference
    from agent.bench import file_sha256, time_invokes
    from agent.schema import make_job

    job = make_job("bench", str(args.model), file_sha256(str(args.model)), threads=args.threads,
                   timing={"warmup_min_runs": 1, "warmup_min_seconds": 0.2, "min_runs": 50,
                           "min_seconds": args.min_seconds})
    backend = backends.for_job(job)
    backend.load(str(args.model))
    backend.prepare_inputs(seed=1)
    invoke = backend.invoker()
    medians: dict[str, list[float]] = {"bare": [], "metered": []}
    costs: list[float] = []
    try:
        for _ in range(args.loops):
            for variant in ("bare", "metered"):
                meter = interference.Meter(threads=args.threads) if variant == "metered" else None
                timing = time_invokes(invoke, job["timing"], backend.invoke_errors, meter=meter)
                medians[variant].append(timing["summary"]["median_ms"])
                if meter is not None:
                    costs.append(meter.document()["measure_cost_s"] / timing["timed_seconds"])
    finally:
        backend.close()
    bare, metered = statistics.median(medians["bare"]), statistics.median(medians["metered"])
    ratios = sorted(m / b for m, b in zip(medians["metered"], medians["bare"], strict=True))
    print(f"model {args.model.name}, {args.threads} thread(s), {args.loops} loops per variant of "
          f">= {args.min_seconds:g} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median latency: bare {bare:.3f} ms, metered {metered:.3f} ms, ratio {metered / bare:.4f} "
          f"(pairwise ratios p10 {ratios[len(ratios) // 10]:.4f} .. p90 {ratios[(len(ratios) * 9) // 10]:.4f})")
    print(f"meter cost: median {statistics.median(costs) * 100:.4f}% of a timed loop, "
          f"max {max(costs) * 100:.4f}% (goal < 0.5%)")
    return 0 if max(costs) < 0.005 else 1


if __name__ == "__main__":
    raise SystemExit(main())
