"""How farm's store holds up with a year of nightlies: SQLite and PostgreSQL, measured in one run.

Fills a fresh database at the newest schema with ``--scale`` x (1,000,000 results, 10,000,000 samples)
spread like a year of nightlies on 50 boards: one run per board per night, 55 cells per run (models x
delegates x threads x power modes the board has), 10 timed samples per result, 5 % of the cells skipped.
The fill writes the tables directly in large batches (it is the bench's set-up, not what it measures),
the cell totals (migration 0024) as ingest would have added to them;
then it times, on each database:

- ingest per result: ``orchestrator.store.jobs.ingest_result`` (the controller's own path: the result
  row, its samples, the job closed) for 200 new results, one transaction each;
- the pivot over every result: result count and mean median latency by board x model family x
  delegate x threads x power mode, in the database, two ways: GROUP BY on ``v_results`` as a user
  would write it, and farm's (``orchestrator/results/pivot.py``: the per-cell totals of migration 0024,
  which ingest adds each result to, joined to hosts and models); both must agree;
- ``farm results`` with filters, as the CLI runs (a new process each): one host's latest run, and one
  host's results of one model family over the last 30 nights;
- ``farm report`` on the latest 1,000 runs (``--since`` the night the 1,000th newest run started), as the
  CLI runs, tables only.

Goals (issue 18): pivot < 300 ms and report < 5 s on both databases, at scale 1. The fill at scale 1
takes many minutes and some GB of disk; smaller scales keep the same shape with fewer nights.

Run:  .venv/bin/python bench/store_scale.py --scale 0.01
      .venv/bin/python bench/store_scale.py --scale 1 --databases sqlite,postgresql --json out/store.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from orchestrator.results.pivot import DEFAULT_BY, cell_pivot
from orchestrator.store import open_store, upgrade
from orchestrator.store import schema as tables
from orchestrator.store.db import Store
from orchestrator.store.jobs import ingest_result

FULL_RESULTS = 1_000_000
SAMPLES_PER_RESULT = 10
BOARDS = 50
CELLS_PER_RUN = 55
SKIPPED_SHARE = 0.05
REPORT_RUNS = 1_000
BATCH = 20_000
PG_SERVER = os.environ.get("FARM_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
GOALS_S = {"pivot": 0.300, "report": 5.0}
FIRST_NIGHT = datetime(2025, 12, 1, 1, 0, tzinfo=timezone.utc)

BOARD_KINDS = ("jetson-nano", "rpi4", "rpi3b+", "devboard", "x86-usb")
FAMILIES = ("conv_stack", "dense_stack", "mobilenet_v1", "mobilenet_v2", "ssd_mobilenet_v1", "deeplabv3")
POWER_MODES = {"jetson-nano": ("10W", "5W"), "rpi4": ("ondemand", "powersave"), "rpi3b+": ("ondemand",),
               "devboard": ("ondemand",), "x86-usb": (None,)}

PIVOT = """
SELECT board, model_family, delegate, threads, power_mode, COUNT(*) AS results, AVG(median_ms) AS mean_of_medians
FROM v_results WHERE status = 'succeeded'
GROUP BY board, model_family, delegate, threads, power_mode
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01,
                        help="fraction of 1 M results / 10 M samples (default 0.01: 10,000 results)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite, postgresql or both (default)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each timed query (default 3)")
    parser.add_argument("--pg", default=PG_SERVER, help=f"PostgreSQL server URL (default {PG_SERVER}); the bench "
                        "works in a schema of its own and drops it at the end")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--keep", type=Path, help="keep the filled databases in this folder (SQLite) and in a schema "
                        "named after the scale (PostgreSQL), and reuse them next time instead of filling again: "
                        "for profiling a change without a refill (remove the folder and the schema by hand)")
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not 0 < args.scale <= 10 or args.repeats < 1 or not set(databases) <= {"sqlite", "postgresql"}:
        parser.error("--scale must be in (0, 10], --repeats positive, --databases sqlite and/or postgresql")
    found: dict[str, dict[str, Any]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="farm-bench-store-"))
    os.environ["FARM_DATA_DIR"] = str(scratch / "data")
    try:
        for database in databases:
            if args.keep:
                found[database] = measure_kept(database, args.keep, args.scale, args.pg, args.repeats)
                continue
            with bench_database(database, scratch, args.pg) as url:
                found[database] = measure(url, args.scale, args.repeats)
                found[database].pop("written_all")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(found, args.scale)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(found, indent=1, default=str) + "\n")
    return 0


class bench_database:
    """A fresh database for the bench: a SQLite file in scratch, or a PostgreSQL schema dropped afterwards."""

    def __init__(self, kind: str, scratch: Path, pg_server: str) -> None:
        self.kind, self.scratch, self.pg_server = kind, scratch, pg_server
        self.schema = f"farm_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.scratch / 'store.db'}"
        engine = create_engine(self.pg_server)
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        engine.dispose()
        return f"{self.pg_server}?options=-csearch_path%3D{self.schema}"

    def __exit__(self, *exc: object) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.scratch / 'store.db'}{suffix}").unlink(missing_ok=True)
            return
        engine = create_engine(self.pg_server)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        engine.dispose()


def measure_kept(kind: str, folder: Path, scale: float, pg_server: str, repeats: int) -> dict[str, Any]:
    """measure() on a database kept from an earlier run of the same scale, filled first if there is none.

    What a fill wrote is remembered beside it (``written`` is what the timed commands select by); a kept
    database is brought to the newest schema first, so a new migration is measured on it as it would run."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{scale:g}".replace(".", "_")
    if kind == "sqlite":
        url = f"sqlite:///{(folder / f'store-{tag}.db').resolve()}"
    else:
        schema = f"farm_bench_keep_{tag}"
        engine = create_engine(pg_server)
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine.dispose()
        url = f"{pg_server}?options=-csearch_path%3D{schema}"
    manifest = folder / f"written-{kind}-{tag}.json"
    written = json.loads(manifest.read_text()) if manifest.exists() else None
    if written is not None:
        upgrade(url)
        engine = create_engine(url)
        drop_ingest_runs(engine)
        engine.dispose()
        print(f"  {kind}: reusing the database kept in {manifest}", flush=True)
    found = measure(url, scale, repeats, written)
    manifest.write_text(json.dumps(found.pop("written_all")) + "\n")
    return found


def drop_ingest_runs(engine: Engine) -> None:
    """Undo an earlier run's ingest measurement: its run would be the newest, which --latest must not see, and
    its results are in a cell's totals."""
    with engine.begin() as connection:
        ids = "SELECT r.id FROM results r JOIN jobs j ON j.id = r.job_id JOIN runs u ON u.id = j.run_id " \
              "WHERE u.matrix = 'bench-ingest'"
        connection.execute(text(f"""UPDATE cell_totals SET results = results - (SELECT COUNT(*) FROM ({ids}) x),
            total_median_ms = total_median_ms - COALESCE((SELECT SUM(median_ms) FROM results
                                                          WHERE id IN ({ids})), 0)
            WHERE host_id = 1 AND model_id = 1 AND delegate = 'cpu' AND threads = 1 AND power_mode = ''"""))
        # A cell the fill never had is the ingest's alone: gone with it, as if never added to.
        connection.execute(text("DELETE FROM cell_totals WHERE results <= 0"))
        connection.execute(text(f"DELETE FROM samples WHERE result_id IN ({ids})"))
        connection.execute(text(f"DELETE FROM results WHERE id IN ({ids})"))
        connection.execute(text("DELETE FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE matrix = 'bench-ingest')"))
        connection.execute(text("DELETE FROM runs WHERE matrix = 'bench-ingest'"))


# -- the fill ---------------------------------------------------------------------------------------------------

def board_cells(board: str, models: list[tuple[int, str, bool]], rng: random.Random) -> list[tuple[Any, ...]]:
    """The 55 cells one board's nightly runs: (model id, delegate, threads, power mode, usb port, usb speed)."""
    cells = []
    tpu = board in ("devboard", "x86-usb", "jetson-nano", "rpi4", "rpi3b+")
    for model_id, _family, compiled in models:
        for mode in POWER_MODES[board]:
            if compiled and tpu:
                port, speed = ("1-1.2", 480) if board == "rpi3b+" else ("2-1", 5000)
                cells.append((model_id, "edgetpu", 1, mode, port, speed))
            elif not compiled:
                cells += [(model_id, "cpu", threads, mode, None, None) for threads in (1, 2, 4)]
    rng.shuffle(cells)
    while len(cells) < CELLS_PER_RUN:  # boards with few modes repeat a cell at another thread count
        model_id, delegate, threads, mode, port, speed = cells[len(cells) % len(cells)]
        cells.append((model_id, delegate, threads + 2, mode, port, speed))
    return cells[:CELLS_PER_RUN]


def fill(engine: Engine, scale: float) -> dict[str, Any]:
    """Write the year of nightlies; returns what was written (counts, hosts, the nights' range)."""
    rng = random.Random(18)
    results_wanted = max(CELLS_PER_RUN, round(FULL_RESULTS * scale))
    runs = math.ceil(results_wanted / (CELLS_PER_RUN * (1 - SKIPPED_SHARE)))
    hosts = [(index + 1, f"{BOARD_KINDS[index % len(BOARD_KINDS)]}-{index + 1:02d}", BOARD_KINDS[index % len(BOARD_KINDS)])
             for index in range(BOARDS)]
    models: list[tuple[int, str, bool]] = []
    model_rows = []
    for index, family in enumerate(FAMILIES * 2):
        compiled = index >= len(FAMILIES)
        model_id = index + 1
        name = f"{family}-bench" + ("+edgetpu" if compiled else "")
        models.append((model_id, family, compiled))
        model_rows.append({"id": model_id, "sha256": f"{model_id:064x}", "name": name, "family": family, "params": {},
                           "source": "compiled" if compiled else "synthetic", "path": f"/bench/{name}.tflite",
                           "size_bytes": 1_000_000, "inputs": [], "outputs": [], "ops_per_inference": 10 ** 9,
                           "needs_edgetpu": compiled,
                           "source_model_id": model_id - len(FAMILIES) if compiled else None})
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(insert(tables.HostRow), [{"id": i, "name": n, "transport": "ssh", "address": f"10.0.0.{i}",
                                                     "board": b} for i, n, b in hosts])
        connection.execute(insert(tables.HostFactsRow), [
            {"id": i, "host_id": i, "taken_at": now,
             "facts": {"board": b, "os": "Debian", "kernel": "6.1", "cpu_count": 4, "agent_version": "0.1.0"}}
            for i, _n, b in hosts])
        connection.execute(insert(tables.ModelRow), model_rows)
    cells = {i: board_cells(b, models, rng) for i, _n, b in hosts}
    job_id = result_id = 0
    jobs, results, samples = [], [], []
    totals: dict[tuple[Any, ...], list[float]] = {}  # cell -> [results, sum of medians]: what ingest adds to
    written = {"runs": runs, "jobs": 0, "results": 0, "samples": 0}

    def flush(force: bool = False) -> None:
        if not force and len(samples) < BATCH * 5:
            return
        with engine.begin() as connection:
            for table, rows in ((tables.JobRow, jobs), (tables.ResultRow, results), (tables.SampleRow, samples)):
                if rows:
                    connection.execute(insert(table), rows)
        written["jobs"] += len(jobs)
        written["results"] += len(results)
        written["samples"] += len(samples)
        jobs.clear(), results.clear(), samples.clear()

    with engine.begin() as connection:
        connection.execute(insert(tables.RunRow), [
            {"id": run + 1, "matrix": "nightly", "inventory": "lab.yaml", "status": "finished",
             "started_at": run_start(run), "finished_at": run_start(run) + timedelta(minutes=40),
             "controller_version": "0.1.0", "tags": ["nightly"]} for run in range(runs)])
    for run in range(runs):
        host_id = run % BOARDS + 1
        started = run_start(run)
        for cell_index, (model_id, delegate, threads, mode, port, speed) in enumerate(cells[host_id]):
            job_id += 1
            skipped = rng.random() < SKIPPED_SHARE
            jobs.append({"id": job_id, "run_id": run + 1, "host_id": host_id, "model_id": model_id,
                         "cell_key": f"{host_id}|{cell_index}", "delegate": delegate, "threads": threads,
                         "power_mode": mode, "usb_port": port, "usb_speed": speed, "timing": {},
                         "status": "skipped" if skipped else "succeeded", "attempt": 1,
                         "reason": "the host has no Edge TPU at that port" if skipped else None,
                         "started_at": started, "finished_at": started})
            if skipped:
                continue
            result_id += 1
            base = (5.0 if delegate == "edgetpu" else 50.0 / threads) * (1 + model_id / 10)
            values = sorted(int(base * 1e6 * (1 + rng.gauss(0, 0.02))) for _ in range(SAMPLES_PER_RESULT))
            median = (values[4] + values[5]) / 2e6
            results.append({
                "id": result_id, "job_id": job_id, "attempt": 1, "facts_id": host_id, "runtime_name": "tflite_runtime",
                "runtime_version": "2.14.0", "python_version": "3.11.2", "init_ms": 20.0,
                "first_inference_ms": median * 1.5, "warmup_runs": 1, "count": SAMPLES_PER_RESULT,
                "mean_ms": median, "median_ms": median, "p90_ms": values[8] / 1e6, "p99_ms": values[9] / 1e6,
                "min_ms": values[0] / 1e6, "max_ms": values[9] / 1e6, "std_ms": 0.01, "power_mode_measured": mode,
                "usb_speed_measured": speed, "throttled": False, "created_at": started,
                "detail": {"runtime": {"name": "tflite_runtime", "version": "2.14.0"},
                           "conditions": {"before": {"max_temperature_c": 45.0}, "after": {"max_temperature_c": 51.0}},
                           "edgetpu": {"port": port, "device": "usb:0"} if port else None}})
            samples += [{"result_id": result_id, "idx": i, "duration_ns": v} for i, v in enumerate(values)]
            total = totals.setdefault((host_id, model_id, delegate, threads, mode or ""), [0, 0.0])
            total[0] += 1
            total[1] += median
        flush()
    flush(force=True)
    with engine.begin() as connection:
        connection.execute(insert(tables.CellTotalRow), [
            {"host_id": h, "model_id": m, "delegate": d, "threads": t, "power_mode": p, "results": n,
             "total_median_ms": total} for (h, m, d, t, p), (n, total) in totals.items()])
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("hosts", "host_facts", "models", "runs", "jobs", "results"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                        f"(SELECT MAX(id) FROM {table}))"))
            connection.execute(text("ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    written["hosts"] = [name for _, name, _ in hosts]
    written["report_since"] = run_start(max(0, runs - REPORT_RUNS)).strftime("%Y-%m-%dT%H:%M")
    written["last_night"] = run_start(runs - 1).strftime("%Y-%m-%d")
    return written


def run_start(run: int) -> datetime:
    """Run ``run`` is board ``run % 50``'s nightly on night ``run // 50``, a minute apart per board."""
    return FIRST_NIGHT + timedelta(days=run // BOARDS, minutes=run % BOARDS)


# -- the measurements -------------------------------------------------------------------------------------------

def measure(url: str, scale: float, repeats: int, written: dict[str, Any] | None = None) -> dict[str, Any]:
    """The timings on ``url``, filled first unless ``written`` says what an earlier fill wrote there."""
    upgrade(url)
    if written is None:
        engine = create_engine(url)
        started = time.perf_counter()
        written = fill(engine, scale)
        written["fill_s"] = time.perf_counter() - started
        engine.dispose()
        print(f"  {url.split(':')[0]}: filled {written['results']:,} results, {written['samples']:,} samples in "
              f"{written['fill_s']:.0f} s", flush=True)
    fill_s = written["fill_s"]
    host = written["hosts"][min(7, written["runs"] - 1)]  # a board with runs, at any scale
    last_host = written["hosts"][(written["runs"] - 1) % BOARDS]  # --latest is the newest run of all: its host
    since = (datetime.fromisoformat(written["last_night"]) - timedelta(days=30)).strftime("%Y-%m-%d")
    commands = {
        "results --host H --latest": ["results", "--host", last_host, "--latest"],
        "results --host H --model F --since 30 nights": ["results", "--host", host, "--model", "mobilenet_v2",
                                                        "--since", since],
        "report --since (latest 1,000 runs)": ["report", "--since", written["report_since"]],
    }
    runs = {name: [farm(url, args) for _ in range(repeats)] for name, args in commands.items()}
    cli = {name: [wall for wall, _ in times] for name, times in runs.items()}
    cli_cpu = {name: [cpu for _, cpu in times] for name, times in runs.items()}
    store = open_store(url)
    try:
        pivot_view_s = [timed(lambda: pivot(store)) for _ in range(repeats)]
        pivot_s = [timed(lambda: cell_pivot(store)) for _ in range(repeats)]
        same_pivot = same_groups(pivot(store), cell_pivot(store))
        ingest_ms = measure_ingest(store, 200)  # last: its run is the newest, which --latest above must not see
    finally:
        store.close()
    return {"written": {k: v for k, v in written.items() if k != "hosts"}, "written_all": written, "fill_s": fill_s,
            "ingest_ms": ingest_ms,
            "pivot_s": pivot_s, "pivot_view_s": pivot_view_s, "same_pivot": same_pivot, "cli_s": cli, "cli_cpu_s": cli_cpu,
            "load": os.getloadavg()}


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def pivot(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        rows = connection.execute(text(PIVOT)).all()
    if not rows:
        raise RuntimeError("the pivot found no results")
    return rows


def same_groups(view_rows: list[Any], shaped: list[dict[str, Any]]) -> bool:
    """Whether the view's GROUP BY and farm's pivot found the same groups, counts and means."""
    def key(values: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple("" if v is None else str(v) for v in values)

    view = {key(tuple(r[:5])): (int(r[5]), float(r[6])) for r in view_rows}
    ours = {key(tuple(r[d] for d in DEFAULT_BY)): (int(r["results"]), float(r["mean_median_ms"])) for r in shaped}
    return view.keys() == ours.keys() and all(
        view[k][0] == ours[k][0] and math.isclose(view[k][1], ours[k][1], rel_tol=1e-9) for k in view)


def measure_ingest(store: Store, count: int) -> list[float]:
    """ms per result through the controller's ingest, on new jobs of a new run."""
    with store.engine.begin() as connection:
        run_id = connection.execute(insert(tables.RunRow).values(
            matrix="bench-ingest", inventory="lab.yaml", status="running", controller_version="0.1.0",
            tags=[]).returning(tables.RunRow.id)).scalar_one()
        job_ids = connection.execute(insert(tables.JobRow).returning(tables.JobRow.id), [
            {"run_id": run_id, "host_id": 1, "model_id": 1, "cell_key": f"ingest|{i}", "delegate": "cpu",
             "threads": 1, "timing": {}, "status": "running"} for i in range(count)]).scalars().all()
    values = [5_000_000 + 1000 * i for i in range(SAMPLES_PER_RESULT)]
    from agent.bench import summarize

    result = {"job_id": "bench", "status": "succeeded", "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
              "timing": {"samples_ns": values, "summary": summarize(values), "init_ms": 20.0,
                         "first_inference_ms": 7.0, "warmup_runs": 1}}
    out = []
    for job_id in job_ids:
        started = time.perf_counter()
        if not ingest_result(store, job_id, 1, f"{job_id}.1", 1, "3.11.2", result):
            raise RuntimeError(f"job {job_id}: the result was not stored")
        out.append((time.perf_counter() - started) * 1e3)
    return out


def farm(url: str, args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command: user + system) of one farm command in a new process. On a shared machine
    the wall time is mostly waiting for a CPU; the CPU time is the command's own cost."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args, "--db", url], capture_output=True, text=True,
                          check=False, timeout=600, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(f"farm {' '.join(args)} exited {done.returncode}: {done.stderr[-800:]}")
    if len(done.stdout.splitlines()) < 3:
        raise RuntimeError(f"farm {' '.join(args)} printed no rows: {done.stdout[-300:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# -- the report -------------------------------------------------------------------------------------------------

def report(found: dict[str, dict[str, Any]], scale: float) -> None:
    print()
    print(f"farm's store at scale {scale:g} (1 = 1,000,000 results, 10,000,000 samples), "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    header = f"{'what':<52}" + "".join(f"{name:>18}" for name in found)
    print(header)
    print("-" * len(header))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<52}" + "".join(f"{v:>18}" for v in values))

    row("results / samples", [f"{f['written']['results']:,}/{f['written']['samples'] // 1000:,}k" for f in found.values()])
    row("fill (set-up, not timed against a goal) s", [f"{f['fill_s']:.1f}" for f in found.values()])
    row("ingest per result, median ms", [f"{statistics.median(f['ingest_ms']):.2f}" for f in found.values()])
    row("pivot on v_results (GROUP BY), median s", [f"{statistics.median(f['pivot_view_s']):.3f}"
                                                    for f in found.values()])
    row("pivot, farm's shape (results/pivot.py), s", [f"{statistics.median(f['pivot_s']):.3f}" for f in found.values()])
    row("  both pivots agree", ["yes" if f["same_pivot"] else "NO" for f in found.values()])
    for name in next(iter(found.values()))["cli_s"]:
        row(f"farm {name}, median s", [f"{statistics.median(f['cli_s'][name]):.2f}" for f in found.values()])
        row("  its CPU (user + system), median s", [f"{statistics.median(f['cli_cpu_s'][name]):.2f}"
                                                    for f in found.values()])
    print()
    for database, f in found.items():
        pivot_s = statistics.median(f["pivot_s"])
        report_s = statistics.median(f["cli_s"]["report --since (latest 1,000 runs)"])
        report_cpu_s = statistics.median(f["cli_cpu_s"]["report --since (latest 1,000 runs)"])
        view_s = statistics.median(f["pivot_view_s"])
        print(f"{database}: pivot {pivot_s * 1e3:.0f} ms, {view_s / pivot_s:.1f}x faster than on v_results "
              f"({view_s * 1e3:.0f} ms), {pivot_s / GOALS_S['pivot']:.2f} of the goal "
              f"({'meets' if pivot_s < GOALS_S['pivot'] else 'MISSES'} < 300 ms); report {report_s:.2f} s, "
              f"{report_s / GOALS_S['report']:.2f} of the goal ({'meets' if report_s < GOALS_S['report'] else 'MISSES'}"
              f" < 5 s; its CPU {report_cpu_s:.2f} s)" + ("" if scale >= 1 else f", at scale {scale:g}, not the goals' 1"))


if __name__ == "__main__":
    sys.exit(main())
