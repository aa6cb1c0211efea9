"""The crash-safety gaps the fault campaign found, each reproduced deterministically, then closed:
a database restart while a run or a resume starts, a host unreachable when a run starts, and a
controller killed before its jobs were planned."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli_resume import exit_code, resume_run
from orchestrator.integrity import check_run
from orchestrator.inventory import load_inventory
from orchestrator.lifecycle import RetryPolicy
from orchestrator.models import registry
from orchestrator.scheduler import QuietObserver, Runner
from orchestrator.store import open_store
from orchestrator.store.db import Store
from tests.test_faults import FAST, Proxy, spec

NO_RETRY = RetryPolicy(retries=0, backoff=0.1, max_backoff=0.1, unhealthy_after=1)


@pytest.fixture
def proxied_store(pg_url: str, shared_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Proxy]]:
    """A PostgreSQL store reached through a proxy that a test can cut; outages outlast no write's retries."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.up()
    monkeypatch.setenv("FARM_DB_RETRY_SECONDS", "30")
    store = open_store(url.set(port=proxy.port).render_as_string(hide_password=False))
    registry.add_file(store, shared_model, name="mobilenet")
    try:
        yield store, proxy
    finally:
        store.close()
        proxy.down()


def write_inventory(path: Path, python: str) -> Path:
    path.write_text(f"hosts:\n  - name: local\n    transport: local\n    python: {python}\n")
    return path


def failed_run(store: Store, inventory: Path) -> int:
    """A run whose two jobs failed for infrastructure reasons (its host's Python was missing)."""
    hosts = list(load_inventory(write_inventory(inventory, "/nonexistent/python3")).hosts)
    outcome = Runner(store, policy=NO_RETRY).run(spec(0.0), hosts, registry.list_models(store), str(inventory))
    assert outcome.counts == {"failed": 2}
    write_inventory(inventory, sys.executable)  # the host is fixed: --resume runs the jobs again
    return outcome.run_id


def up_later(proxy: Proxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.up)
    timer.start()
    return timer


# --- gap 1: a database restart while a run or a resume starts ---------------------------------------------------

def test_a_resume_started_while_the_database_restarts_waits_for_it(proxied_store: tuple[Store, Proxy],
                                                                   tmp_path: Path) -> None:
    store, proxy = proxied_store
    run_id = failed_run(store, tmp_path / "inventory.yaml")
    store.engine.dispose()  # the pool's connections die with the proxy, as with a restarted server
    proxy.down()
    timer = up_later(proxy, 2.0)
    console = Console(file=io.StringIO())
    outcome = resume_run(run_id, None, store, None, None, {}, QuietObserver(), console)  # as `farm run --resume`
    timer.join()
    assert exit_code(outcome) == 0
    report = check_run(store, run_id)
    assert report.ok and report.by_status == {"succeeded": 2}, report


def test_a_run_started_while_the_database_restarts_waits_for_it(proxied_store: tuple[Store, Proxy]) -> None:
    store, proxy = proxied_store
    models, inventory = registry.list_models(store), load_inventory(None)
    store.engine.dispose()  # the pool's connections die with the proxy, as with a restarted server
    proxy.down()
    timer = up_later(proxy, 2.0)
    outcome = Runner(store, policy=FAST).run(spec(0.0), list(inventory.hosts), models, inventory.path)
    timer.join()
    assert outcome.store_stats.get("retried", 0) >= 1  # it did meet the outage
    report = check_run(store, outcome.run_id)
    assert report.ok and report.by_status == {"succeeded": 2}, report

