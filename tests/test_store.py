"""The store on real SQLite and real PostgreSQL: migrations, guards, records."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from orchestrator.errors import StoreError
from orchestrator.store import db as store_db
from orchestrator.store import open_store, records


def test_a_new_database_is_created_at_the_newest_schema(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert store_db.current_revision(store.engine) == store_db.head_revision()
        with store.engine.connect() as connection:
            assert connection.execute(text("select count(*) from v_results")).scalar() == 0
    finally:
        store.close()


def test_a_schema_that_is_behind_is_refused_with_the_command_to_run(db_url: str) -> None:
    engine = store_db.create_db_engine(db_url)
    with engine.begin() as connection:
        config = store_db._alembic_config(db_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    with pytest.raises(StoreError, match="Run: farm db upgrade --db"):
        open_store(db_url)
    before, after = store_db.upgrade(db_url)
    assert (before, after) == ("0001", store_db.head_revision())
    open_store(db_url).close()


def test_a_foreign_database_is_not_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("create table precious (x int)"))
        connection.execute(text("insert into precious values (42)"))
    with pytest.raises(StoreError, match="not a farm database"):
        open_store(url)
    with engine.connect() as connection:
        assert connection.execute(text("select x from precious")).scalar() == 42


@pytest.mark.parametrize("url, words", [
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "cannot use the database"),
    ("not a url", "is not a database URL"),
    ("mysql+nosuchdriver://x/y", "no database driver"),
])
def test_unusable_urls_give_one_clear_error(url: str, words: str) -> None:
    with pytest.raises(StoreError, match=words):
        open_store(url)


def test_password_is_hidden_in_messages() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql+psycopg://user:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(caught.value)


def test_a_result_is_stored_with_every_sample(db_url: str) -> None:
    from orchestrator.inventory import Host
    from orchestrator.store.schema import ModelRow, SampleRow

    store = open_store(db_url)
    try:
        host_id = records.upsert_host(store, Host(name="h1", transport="local"))
        facts_id = records.add_facts(store, host_id, {"board": "Raspberry Pi 4", "cpu_count": 4})
        with store.session() as session:
            model = ModelRow(sha256="a" * 64, name="m", family="f", params={}, source="imported", path="/x",
                             size_bytes=1, inputs=[], outputs=[], ops_per_inference=2_000_000)
            session.add(model)
            session.commit()
        run_id = records.create_run(store, "all", "inv.yaml", [])
        (job_id,) = records.add_jobs(store, run_id, [{"host_id": host_id, "model_id": model.id, "cell_key": "k",
                                                      "delegate": "cpu", "threads": 1, "timing": {}}])
        samples = [2_000_000, 1_000_000, 3_000_000]
        result = {"schema": 1, "job_id": "x", "status": "succeeded", "runtime": {"name": "tflite_runtime",
                  "version": "2.14.0"}, "timing": {"init_ms": 1.0, "first_inference_ms": 3.0, "warmup_runs": 2,
                  "samples_ns": samples, "summary": {"count": 3, "mean_ms": 2.0, "median_ms": 2.0, "p90_ms": 2.8,
                                                     "p99_ms": 2.98, "min_ms": 1.0, "max_ms": 3.0, "std_ms": 0.8}}}
        records.store_result(store, job_id, facts_id, "3.11.7", result)
        with store.engine.connect() as connection:
            stored = connection.execute(text("select duration_ns from samples order by idx")).scalars().all()
            row = connection.execute(text("select status, board, gops, runtime_version, python from v_results")).one()
        assert stored == samples
        assert tuple(row) == ("succeeded", "Raspberry Pi 4", pytest.approx(1.0), "2.14.0", "3.11.7")
        assert SampleRow.__tablename__ == "samples"
    finally:
        store.close()


def test_a_postgres_url_in_libpq_spelling_opens_the_same_database(pg_url: str) -> None:
    # postgres:// is what libpq, Heroku and many .env files write; SQLAlchemy 2 alone refuses it.
    spelled = pg_url.replace("postgresql+psycopg://", "postgres://", 1)
    assert spelled.startswith("postgres://")
    store = open_store(pg_url)
    try:
        records.create_run(store, "all", "inv.yaml", [])
    finally:
        store.close()
    again = open_store(spelled)
    try:
        with again.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    finally:
        again.close()
