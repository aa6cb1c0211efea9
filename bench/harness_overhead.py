"""Does farm's harness change the numbers it reports? farm jobs alternated with a bare loop, on real models.

Each round runs, in separate processes of the same Python and in alternating order (ABBA, so drift
and thermal trends fall on both sides alike):
  farm   the agent's real job path (``python -m agent run JOB``): sha256 check, conditions before and
         after, the backend's load and seeded inputs, warm-up, the timed loop with the power sampler
         thread running, the result document
  bare   tflite_runtime's Interpreter with the same model, threads and seeded input, the same warm-up,
         then ``perf_counter_ns()`` around ``invoke()`` and nothing else
and compares the medians of the timed invokes: per round the ratio farm / bare, then the median ratio
and its spread (min–max over rounds). Goal: within 1 % (ratio 0.99–1.01).

What the agent does during its timed loop: the loop body is ``clock; invoke(); clock; append`` (the same
as the bare loop's); beside it the power sampler thread wakes every 50 ms to read the board's power rails
(none on a PC) and once a second checks throttling, so its cost is a few microseconds per 50 ms.

Run:  .venv/bin/python bench/harness_overhead.py [--rounds 6] [--threads 1] [--model NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("FARM_SHARED_MODELS", REPO.parent / "shared" / "models"))
# model file -> timed invokes per round (pycoral times 200 invokes of an Edge TPU model, 20 on a CPU)
MODELS = {"mobilenet_v1_0.25_128_quant.tflite": 300, "deeplabv3_mnv2_dm05_pascal_quant.tflite": 20}
WARMUP_SECONDS = 0.5

BARE = r"""
import json, sys, time
import numpy
from tflite_runtime.interpreter import Interpreter
path, threads, runs, warmup_seconds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
interpreter = Interpreter(model_path=path, num_threads=threads)
interpreter.allocate_tensors()
rng = numpy.random.RandomState(seed)
for detail in interpreter.get_input_details():
    dtype = numpy.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    if dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        data = rng.randint(info.min, int(info.max) + 1, size=shape).astype(dtype)
    else:
        data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    interpreter.set_tensor(detail["index"], data)
invoke = interpreter.invoke
clock = time.perf_counter_ns
started = clock()
invoke()
while clock() - started < warmup_seconds * 1e9:
    invoke()
samples = []
for _ in range(runs):
    before = clock()
    invoke()
    samples.append(clock() - before)
print(json.dumps(samples))
"""


def farm_samples(model: Path, sha: str, threads: int, runs: int, warmup: float, folder: Path,
                 seed_job: str) -> list[int]:
    from agent.schema import make_job

    job = make_job(seed_job, str(model), sha, threads=threads,
                   timing={"warmup_min_runs": 1, "warmup_min_seconds": warmup, "min_runs": runs,
                           "min_seconds": 0.0, "max_seconds": 600.0})
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    out = subprocess.run([sys.executable, "-m", "agent", "run", str(path)], cwd=REPO, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout)
    if result.get("status") != "succeeded":
        raise SystemExit(f"farm job failed: {result.get('error')}")
    return result["timing"]["samples_ns"]


def input_seed(job_id: str) -> int:
    """The seed the agent draws a job's inputs from (agent/bench.py), so both sides see the same input."""
    import random

    return random.Random(job_id).randint(0, 2 ** 31 - 1)


def bare_samples(model: Path, threads: int, runs: int, warmup: float, job_id: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", BARE, str(model), str(threads), str(runs), str(warmup),
                          str(input_seed(job_id))], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="farm/bare pairs per model (default 6)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, help="timed invokes per side and round (default: per model)")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS, help="warm-up seconds (default 0.5)")
    parser.add_argument("--model", action="append", help=f"a file in {SHARED} (default: {', '.join(MODELS)})")
    args = parser.parse_args()
    from agent.bench import file_sha256

    names = args.model or list(MODELS)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores; "
          f"{args.rounds} rounds, {args.threads} thread(s)")
    print(f"{'model':44} {'farm ms':>9} {'bare ms':>9} {'farm/bare':>10} {'spread (min-max)':>18}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            model = SHARED / name
            if not model.exists():
                raise SystemExit(f"{model}: missing (see {SHARED}/README.md)")
            runs, sha = args.runs or MODELS.get(name, 50), file_sha256(str(model))
            farm, bare, ratios = [], [], []
            for k in range(args.rounds):
                order = ("farm", "bare") if k % 2 == 0 else ("bare", "farm")
                medians = {}
                for side in order:
                    samples = (farm_samples(model, sha, args.threads, runs, args.warmup, Path(folder), f"h{k}")
                               if side == "farm" else bare_samples(model, args.threads, runs, args.warmup, f"h{k}"))
                    medians[side] = statistics.median(samples) / 1e6
                farm.append(medians["farm"])
                bare.append(medians["bare"])
                ratios.append(medians["farm"] / medians["bare"])
            ratio = statistics.median(ratios)
            worst = max(worst, abs(ratio - 1))
            print(f"{name:44} {statistics.median(farm):9.3f} {statistics.median(bare):9.3f} {ratio:10.4f} "
                  f"{min(ratios):8.4f}-{max(ratios):.4f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    verdict = "within" if worst <= 0.01 else "OUTSIDE"
    print(f"largest median deviation {worst:.2%}: {verdict} the 1% goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
