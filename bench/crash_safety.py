"""What crash safety costs and how fast it reacts, measured in one run on this machine (local transport).

1. Per-job cost of the spool: the same tiny job sent N times through the old synchronous ``run`` op
   and through ``start`` + ``collect`` + ``ack`` (a detached process per job), alternating; medians
   and the ratio spool / run.
2. Time to detect a dead link during a job: the agent's ``serve`` process SIGKILLed (the link closes:
   EOF) and SIGSTOPped (the link goes silent, like a cut cable), from the fault to the lane declaring
   the link lost; and the job's result, collected after the reconnect, is the first attempt's.
3. Time to resume: a ``farm run`` SIGKILLed mid-run, then ``farm run --resume``: seconds from its
   start to "Run N resumed" and to its end, against the same matrix run without faults.

Run:  .venv/bin/python bench/crash_safety.py [--jobs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.schema import make_job
from orchestrator.agent_client import AgentSession
from orchestrator.dispatch import SpoolClient
from orchestrator.inventory import load_inventory
from orchestrator.lifecycle import RetryPolicy
from orchestrator.matrix import MatrixSpec
from orchestrator.models import registry
from orchestrator.scheduler import Runner
from orchestrator.store import open_store
from orchestrator.transport import open_transport

MODEL = Path(os.environ.get("FARM_SHARED_MODELS", REPO.parent / "shared" / "models")) / \
    "mobilenet_v1_0.25_128_quant.tflite"
TINY = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 1, "min_seconds": 0.0}


def per_job_cost(jobs: int) -> dict:
    host = load_inventory(None).hosts[0]
    session = AgentSession(open_transport(host)).open()
    try:
        remote = session.upload_model(MODEL, hashlib.sha256(MODEL.read_bytes()).hexdigest())
        sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
        spool = SpoolClient(session)
        sync, spooled = [], []
        for n in range(jobs):
            job = make_job(f"bench-sync-{n}", remote, sha, timing=TINY)
            started = time.perf_counter()
            session.run_job(job)
            sync.append(time.perf_counter() - started)
            job = make_job(f"bench-spool-{n}", remote, sha, timing=TINY)
            key = f"bench-spool-{n}.1"
            started = time.perf_counter()
            spool.start(job, key, "bench")
            while key not in spool.collect([key], 5.0)["finished"]:
                pass
            spool.ack([key])
            spooled.append(time.perf_counter() - started)
    finally:
        session.close()
        session.transport.close()
    return {"jobs": jobs, "run_op_median_s": statistics.median(sync),
            "spool_median_s": statistics.median(spooled),
            "ratio_spool_over_run": statistics.median(spooled) / statistics.median(sync)}


def serve_pids(home: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        try:
            if (entry / "comm").read_text().strip() == "farm-job":  # a detached job, forked from serve
                continue
        except OSError:
            continue
        if "serve" in words and any(w.endswith(".pyz") for w in words) and cwd == home:
            found.append(int(entry.name))
    return found


def detection(how: signal.Signals, scratch: Path) -> dict:
    store = open_store(f"sqlite:///{scratch / f'detect-{how.name}.db'}")
    registry.add_file(store, MODEL, name="mobilenet")
    spec = MatrixSpec(name="detect", models=("all",), delegates=("cpu",), threads=(1,),
                      timing={"min_runs": 5, "min_seconds": 20.0, "warmup_min_seconds": 0.0})
    runner = Runner(store, policy=RetryPolicy(retries=3, backoff=0.1, max_backoff=0.5))
    inventory = load_inventory(None)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("outcome", runner.run(
        spec, list(inventory.hosts), registry.list_models(store), inventory.path)))
    thread.start()
    spool = Path(os.environ["HOME"]) / ".cache" / "farm" / "spool"
    while not list(spool.glob("*.pid.json")):
        time.sleep(0.05)
    time.sleep(1.0)
    pids = serve_pids(os.environ["HOME"])
    fault_at = time.time()
    for pid in pids:
        os.kill(pid, how)
    thread.join()
    outcome = box["outcome"]
    lane = next(iter(outcome.lanes.values()))
    store.close()
    return {"fault": how.name, "detect_s": lane.link_lost_at[0] - fault_at if lane.link_lost_at else None,
            "reconnects": lane.reconnects, "collected_late": lane.collected_late, "counts": dict(outcome.counts)}


def farm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "COLUMNS": "200"})


def resume_time(scratch: Path) -> dict:
    db = f"sqlite:///{scratch / 'resume.db'}"
    matrix = scratch / "m.yaml"
    matrix.write_text("matrices:\n  r:\n    models: [mobilenet]\n    threads: [1, 2]\n"
                      "    timing: {min_runs: 5, min_seconds: 2.0, warmup_min_seconds: 0}\n")
    farm("models", "add", str(MODEL), "--name", "mobilenet", "--db", db)
    started = time.perf_counter()
    farm("run", "-m", "r", "--matrix-file", str(matrix), "--db", db)
    clean_s = time.perf_counter() - started
    crashed = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "-m", "r", "--matrix-file",
                                str(matrix), "--db", db], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    spool = Path(os.environ["HOME"]) / ".cache" / "farm" / "spool"
    while not list(spool.glob("*.pid.json")):
        time.sleep(0.05)
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()
    started = time.perf_counter()
    resumed = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--resume", "--db", db],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    assert resumed.stdout is not None
    first = resumed.stdout.readline()
    announced_s = time.perf_counter() - started
    rest = resumed.stdout.read()
    resumed.wait()
    return {"clean_run_s": clean_s, "resume_announced_s": announced_s,
            "resume_total_s": time.perf_counter() - started, "resume_exit": resumed.returncode,
            "first_line": first.strip(), "survived": [l for l in rest.splitlines() if "Faults survived" in l]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="tiny jobs per way in part 1")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ["HOME"] = str(scratch / "home")
        os.environ["FARM_DATA_DIR"] = str(scratch / "data")
        (scratch / "home").mkdir()
        numbers = {"per_job": per_job_cost(args.jobs),
                   "detect_closed": detection(signal.SIGKILL, scratch),
                   "detect_silent": detection(signal.SIGSTOP, scratch),
                   "resume": resume_time(scratch)}
    print(json.dumps(numbers, indent=1))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
