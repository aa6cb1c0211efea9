"""`farm submit` and `farm serve`: several controllers (one per site) sharing one run on PostgreSQL."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated, Any

import typer

from .options import (
    AcceptNewHostKeysOption,
    DbOption,
    HostsOption,
    HostTagsOption,
    InventoryOption,
    KnownHostsOption,
    MatrixFileOption,
    MatrixNameOption,
    NewRunLabelsOption,
    transport_options,
)
from .output import console


def submit(
    matrix: MatrixNameOption = "all",
    matrix_file: MatrixFileOption = None,
    inventory: InventoryOption = None,
    db: DbOption = None,
    host: HostsOption = None,
    tag: HostTagsOption = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
    label: NewRunLabelsOption = None,
) -> None:
    """Store a run and its jobs for `farm serve` controllers to share, and return (needs PostgreSQL).

    Each host's cells are planned from its newest stored facts (`farm inventory check` stores them);
    a host never seen is reached once from here. The run's number is the last line printed.

    Example: farm submit -m all -i lab.yaml --db postgresql+psycopg://db.lab/farm --label commit=3f2a9c1
             farm serve --site lab-a -i site-a.yaml --db postgresql+psycopg://db.lab/farm
    """
    from ..labels import parse_labels

    submit_run(matrix, matrix_file, inventory, db, host, tag, accept_new_host_keys, known_hosts, parse_labels(label))


def submit_run(matrix: str, matrix_file: Any, inventory: Any, db: str | None, host: list[str] | None,
               tag: list[str] | None, accept_new_host_keys: bool, known_hosts: Any,
               labels: dict[str, str] | None = None) -> None:
    """What `farm submit` and `farm run --submit` do."""
    from ..inventory import load_inventory
    from ..matrix import load_matrix
    from ..run_models import models_for_run
    from ..sites.submit import submit as submit_jobs
    from ..store import open_store

    inv = load_inventory(inventory)
    spec = load_matrix(matrix, matrix_file)
    hosts = inv.select(host, tag)
    if spec.hosts or spec.tags:
        chosen = {h.name for h in inv.select(list(spec.hosts) or None, list(spec.tags) or None)}
        hosts = [h for h in hosts if h.name in chosen]
    store = open_store(db)
    try:
        from ..sites.claims import require_postgres

        require_postgres(store, "farm submit (sites sharing a run)")  # before models are built into SQLite
        models = models_for_run(store, spec, console.print)
        done = submit_jobs(store, spec, hosts, models, inv.path,
                           transport_options=transport_options(accept_new_host_keys, known_hosts), labels=labels)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(done.counts.items()) if n)
        console.print(f"Run {done.run_id} submitted: {counts}; `farm serve` controllers run it, "
                      f"`farm status {done.run_id}` shows it.", highlight=False)
        console.print(str(done.run_id), highlight=False)
    finally:
        store.close()


class LineObserver:
    """A long-lived controller's log: one timestamped line per event worth keeping."""

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def host_state(self, host: str, text: str) -> None:
        if not text.startswith(("connecting", "ready", "waiting")):
            self._say(f"{host}: {text}")

    def host_note(self, host: str, text: str) -> None:
        self._say(f"{host}: {text}")

    def jobs_planned(self, host: str, total: int) -> None:
        self._say(f"{host}: {total} job(s) claimed")

    def job_finished(self, host: str, cell: Any, status: str, detail: str) -> None:
        self._say(f"{host}: {cell.model.name} {cell.delegate} t{cell.threads}: {status} {detail}")


def serve(
    site: Annotated[str, typer.Option("--site", help="This controller's site (shown by farm status)")],
    inventory: InventoryOption = None,
    db: DbOption = None,
    host: HostsOption = None,
    lease: Annotated[float, typer.Option("--lease", help="Seconds a claim holds unrenewed; renewed every third")]
    = 60.0,
    batch: Annotated[int, typer.Option("--batch", help="Jobs claimed per host at a time")] = 4,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between claims while idle")] = 2.0,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Exit once no shared job of these hosts is open (claimed by anyone or not)")] = False,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
) -> None:
    """Serve submitted runs: claim the queued jobs of the hosts this inventory reaches and run them.

    Long-lived; several may serve one PostgreSQL (one per site, or more for spares). A controller
    that dies stops renewing its leases: once they expire, another that reaches those hosts (or
    this one restarted) takes its jobs over and collects what the agents' spools hold, as
    `farm run --resume` does. SIGTERM or Ctrl-C releases what is not finished.

    Example: farm serve --site lab-a -i site-a.yaml --db postgresql+psycopg://db.lab/farm
    """
    from ..inventory import load_inventory
    from ..sites.serve import SiteController
    from ..store import open_store

    if batch < 1:
        raise typer.BadParameter("--batch must be 1 or more")
    hosts = load_inventory(inventory).select(host, None)
    store = open_store(db)
    try:
        controller = SiteController(store, site, hosts, lease=lease, batch=batch, poll=poll,
                                    transport_options=transport_options(accept_new_host_keys, known_hosts),
                                    observer=LineObserver())

        def stop(signum: int, _frame: Any) -> None:
            print(f"signal {signum}: releasing unfinished claims and stopping", file=sys.stderr, flush=True)
            controller.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"controller {controller.id} serving {len(hosts)} host(s) at site {site}", flush=True)
        stats = controller.serve(until_idle=until_idle)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(stats.counts.items()))
        print(f"controller {controller.id} stopped: {stats.claimed} claimed ({stats.taken_over} taken over), "
              f"{stats.released} released; {counts or 'no jobs'}", flush=True)
    finally:
        store.close()
