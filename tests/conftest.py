"""Shared fixtures: isolated data dirs, and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from farm_lab.lingering import stop_keepers, stop_lingering_agents

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_SERVER = os.environ.get("FARM_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("FARM_SHARED_MODELS", REPO.parent / "shared" / "models"))


def missing_service(message: str) -> None:
    """In CI a missing service is a failure, not a skip."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own data dir and home, so the user's own farm.db is never touched."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FARM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FARM_DB_URL", raising=False)
    monkeypatch.setenv("HOME", str(home))
    yield home
    # Checks leave their agents lingering (agent/linger.py) under this test's folders: none may outlive it.
    stop_lingering_agents(str(tmp_path))
    stop_keepers(str(tmp_path))  # and the SSH keepers that kept their connections


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        engine = create_engine(PG_SERVER, connect_args={"connect_timeout": 5})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it means the service is missing
        missing_service(f"PostgreSQL is not reachable at {PG_SERVER}: {exc}")
    return PG_SERVER


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose default schema is private to this test."""
    schema = f"farm_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(pg_server)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_server}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'farm.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def shared_model() -> Path:
    path = SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite"
    if not path.exists():
        missing_service(f"the shared test models are missing: {path}")
    return path
