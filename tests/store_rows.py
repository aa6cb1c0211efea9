"""A test's look at what a command stored: the rows `farm query --format json` prints, read in this process.

Reading, not what the test checks: `farm query` as a child process costs a fresh interpreter's imports
(pandas, SQLAlchemy, alembic: about 2 s each on the shared 2-core machine, a dozen times in a nightly
test); this goes through the same read-only query and the same JSON conversion in milliseconds. The
command itself is tested where it is the subject (test_query, test_query_limits, test_results_query,
test_hostile_inputs, test_cli_help).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.query import read_only_query
from orchestrator.results.columns import iso_timestamps, typed
from orchestrator.store import open_store


def query_rows(db: str, sql: str, **params: object) -> list[dict[str, Any]]:
    """``farm query SQL --param k=v ... --db DB --format json``, parsed; parameters bound as text, as there."""
    store = open_store(db)
    try:
        frame = read_only_query(store, sql, {name: str(value) for name, value in params.items()})
    finally:
        store.close()
    # The conversion `emit` makes for --format json, so that types match what the command prints.
    return json.loads(iso_timestamps(typed(frame, known_only=True)).to_json(orient="records", date_format="iso"))
