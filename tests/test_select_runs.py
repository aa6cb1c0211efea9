"""The run selection the database narrows (ids, a window around --since/--until, the newest run) keeps the
exact semantics: --since inclusive, --until exclusive, any UTC offset, --latest the newest of what the
other run criteria leave, on SQLite (which compares stored text) and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from orchestrator.results import ResultFilter, select_runs
from orchestrator.store import open_store, records
from orchestrator.store.schema import RunRow

NIGHT = datetime(2026, 3, 1, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def runs(db_url: str):  # type: ignore[no-untyped-def]
    """Five nightlies an hour apart (the third tagged 'lab-b', the fourth labelled), then an older run made
    later: ids and start times disagree."""
    store = open_store(db_url)
    ids = []
    for n, start in enumerate([NIGHT + timedelta(hours=h) for h in range(5)] + [NIGHT - timedelta(days=3)]):
        run_id = records.create_run(store, "nightly", "lab.yaml", ["lab-b"] if n == 2 else ["lab-a"],
                                    labels={"firmware": "5.1"} if n == 3 else None)
        with store.session() as session:
            session.execute(update(RunRow).where(RunRow.id == run_id).values(started_at=start))
            session.commit()
        ids.append(run_id)
    yield store, ids
    store.close()


def test_since_and_until_bound_exactly_in_any_offset(runs) -> None:  # type: ignore[no-untyped-def]
    store, ids = runs
    assert select_runs(store, ResultFilter(since=NIGHT + timedelta(hours=2))) == ids[2:5]
    assert select_runs(store, ResultFilter(until=NIGHT + timedelta(hours=2))) == [*ids[:2], ids[5]]
    # 03:00 at +02:00 is 01:00 UTC: the first night's start, kept; and a microsecond later it is not.
    plus_two = timezone(timedelta(hours=2))
    assert select_runs(store, ResultFilter(since=datetime(2026, 3, 1, 3, 0, tzinfo=plus_two))) == ids[:5]
    assert select_runs(store, ResultFilter(since=NIGHT + timedelta(microseconds=1))) == ids[1:5]
    assert select_runs(store, ResultFilter(since=NIGHT + timedelta(hours=1),
                                           until=NIGHT + timedelta(hours=3))) == ids[1:3]


def test_latest_is_the_newest_id_the_other_criteria_leave(runs) -> None:  # type: ignore[no-untyped-def]
    store, ids = runs
    assert select_runs(store, ResultFilter(latest=True)) == [ids[5]]  # made last, whenever it started
    assert select_runs(store, ResultFilter(latest=True, since=NIGHT)) == [ids[4]]
    assert select_runs(store, ResultFilter(latest=True, runs=(ids[0], ids[1]))) == [ids[1]]
    assert select_runs(store, ResultFilter(latest=True, tags=("lab-b",))) == [ids[2]]
    assert select_runs(store, ResultFilter(latest=True, labels=(("firmware", None),))) == [ids[3]]
    assert select_runs(store, ResultFilter(runs=(ids[3], 10_000, ids[1]))) == [ids[1], ids[3]]
    assert select_runs(store, ResultFilter(tags=("lab-a",), until=NIGHT + timedelta(hours=3))) == \
        [ids[0], ids[1], ids[5]]
