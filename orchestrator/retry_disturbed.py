"""Re-running disturbed cells: `farm run --retry-disturbed N` and the nightly job's bounded re-runs.

Each re-run is a run of its own (tagged ``retry-disturbed`` and ``retry-of:<run>``) holding only the cells
whose last attempt was disturbed, so every attempt stays stored and visible; nothing is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable

from .inventory import Host
from .matrix import MatrixSpec
from .results.disturbed import HostDisturbance, by_host, disturbed_cells
from .scheduler import Runner
from .store.db import Store
from .store.schema import ModelRow


def rerun_disturbed(runner: Runner, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow], inventory: str,
                    run_id: int, attempts: int, tags: list[str] | None = None,
                    say: Callable[[str], None] | None = None) -> list[int]:
    """Run the disturbed cells of ``run_id`` again, up to ``attempts`` times; returns the new runs' ids."""
    new_runs: list[int] = []
    last = run_id
    for attempt in range(1, attempts + 1):
        keys = {cell.cell_key for cell in disturbed_cells(runner.store, [last])}
        if not keys:
            break
        if say is not None:
            say(f"Re-running {len(keys)} disturbed cell(s) of run {run_id} (attempt {attempt} of {attempts})")
        runner.only_cells = keys
        try:
            outcome = runner.run(spec, hosts, models, inventory, tags=[
                *(tags or []), "retry-disturbed", f"retry-of:{run_id}", f"attempt:{attempt}"])
        finally:
            runner.only_cells = None
        new_runs.append(outcome.run_id)
        last = outcome.run_id
    return new_runs


def disturbed_lines(store: Store, run_id: int, retry_runs: list[int]) -> list[str]:
    """One line per host that had disturbed cells in ``run_id``: how many, how much other load, what the
    re-runs made of them."""
    first = by_host(store, [run_id])
    still: dict[str, HostDisturbance] = by_host(store, retry_runs[-1:]) if retry_runs else first
    lines = []
    for host, entry in sorted(first.items()):
        if not entry.disturbed:
            continue
        load = entry.mean_other_load
        line = (f"disturbed {host}: {len(entry.disturbed)} of {entry.measured} cells"
                + (f", others used {load:.2f} cores on average" if load is not None else "")
                + f" (e.g. {entry.disturbed[0].reason.split('; ')[0]})")
        if retry_runs:
            left = len(still[host].disturbed) if host in still else 0
            line += f"; after {len(retry_runs)} re-run(s) (runs {', '.join(map(str, retry_runs))}): {left} still disturbed"
        lines.append(line)
    return lines
