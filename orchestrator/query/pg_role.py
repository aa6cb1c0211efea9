"""The PostgreSQL role `farm query` runs as: SELECT on farm's tables and views, nothing else.

Migration 0012 creates it when the migrating user may; the SQL is here too, so that a refusal
can say exactly what an administrator must run.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ..errors import FarmError

ROLE = "farm_query"


def grant_sql(bind: Engine | Connection) -> str:
    """The statements that give ``ROLE`` read access to farm's schema and let farm's user become it."""
    schema, user = _schema_and_user(bind)
    return " ".join([
        f"CREATE ROLE {ROLE} NOLOGIN;",
        f'GRANT USAGE ON SCHEMA "{schema}" TO {ROLE};',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {ROLE};',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{user}" IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO {ROLE};',
        f'GRANT {ROLE} TO "{user}";',
    ])


def switch_to_query_role(connection: Connection) -> None:
    """SET LOCAL ROLE inside the caller's transaction, or refuse with what to grant."""
    connection.exec_driver_sql("SAVEPOINT farm_query_role")
    try:
        connection.exec_driver_sql(f"SET LOCAL ROLE {ROLE}")
    except DBAPIError as exc:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT farm_query_role")
        reason = " ".join(str(exc.orig).split())
        raise FarmError(f"farm query runs as the PostgreSQL role {ROLE}, which may only read farm's tables, "
                        f"and cannot switch to it here ({reason}); nothing was run. An administrator can "
                        f"create it and let this user use it: {grant_sql(connection)}") from None
    connection.exec_driver_sql("RELEASE SAVEPOINT farm_query_role")


def _schema_and_user(bind: Engine | Connection) -> tuple[str, str]:
    query = text("SELECT current_schema(), session_user")
    if isinstance(bind, Connection):
        row = bind.execute(query).one()
    else:
        with bind.connect() as connection:
            row = connection.execute(query).one()
    return str(row[0] or "public"), str(row[1])
