"""Which statements `farm query` lets through, decided from the parsed statement before it runs.

One SELECT (or UNION/VALUES/WITH around SELECTs), nothing that writes anywhere inside it, and
none of the functions that reach outside the tables: files, locks, signals, settings, other SQL.
The database's own guards (read-only transaction, unprivileged role, authorizer) stay in place
behind this; the parser is what stops a side effect the engine would allow in a read-only
transaction, before any of it runs.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp

from ..errors import FarmError

# sqlglot warns on stderr about syntax it keeps as an opaque command; farm refuses those anyway.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}
_QUERY_SHAPES = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Copy,
           exp.Command, exp.Into, exp.Lock, exp.Set, exp.Transaction, exp.Commit, exp.Rollback, exp.Pragma,
           exp.TruncateTable, exp.LoadData, exp.Use, exp.Cache, exp.Uncache, exp.Refresh)
# PostgreSQL functions that read files, take locks, signal backends, change settings or run SQL
# given as text; SQLite's load_extension. Matched by prefix, lower case.
_FORBIDDEN_PREFIXES = ("pg_", "lo_", "dblink", "set_config", "query_to_xml", "cursor_to_xml",
                       "table_to_xml", "schema_to_xml", "database_to_xml", "load_extension", "txid_",
                       "nextval", "setval", "currval", "lastval")
# The pg_ functions that only describe values or wait, handy in ad-hoc queries.
_HARMLESS = {"pg_typeof", "pg_column_size", "pg_sleep"}  # pg_sleep: the statement timeout bounds it
# SQLite pragmas that only describe the schema (the authorizer refuses the rest).
READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                "foreign_key_list", "database_list", "collation_list", "function_list", "pragma_list",
                "compile_options"}


def check_statement(sql: str, backend: str) -> None:
    """Raise FarmError unless ``sql`` is one read-only query shape farm runs."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECTS.get(backend)) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise FarmError(f"farm query cannot parse the statement, so it does not run it: {reason}") from None
    if len(statements) != 1:
        raise FarmError(f"farm query runs exactly one statement; this has {len(statements)}")
    statement = statements[0]
    if backend == "sqlite" and isinstance(statement, exp.Pragma) and _pragma_reads(statement):
        return
    if not isinstance(statement, _QUERY_SHAPES):
        raise FarmError(f"farm query runs SELECT statements only, not {_kind(statement)}; "
                        "it is read-only and nothing was run")
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise FarmError(f"farm query is read-only: the statement contains {_kind(node)}; nothing was run")
        if isinstance(node, exp.Select) and node.args.get("locks"):
            raise FarmError("farm query is read-only: SELECT … FOR UPDATE/SHARE takes row locks; nothing was run")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name not in _HARMLESS and name.startswith(_FORBIDDEN_PREFIXES):
                raise FarmError(f"farm query does not call {name}(): it reaches outside the tables "
                                "(files, locks, backends, settings or sequences); nothing was run")


def _pragma_reads(statement: exp.Pragma) -> bool:
    # sqlglot reads "pragma table_info(runs)" as an assignment; the name is what decides.
    inner = statement.this
    while isinstance(inner, exp.EQ):
        inner = inner.this
    name = inner.name if isinstance(inner, exp.Expression) else str(inner)
    return str(name).lower() in READ_PRAGMAS


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _kind(node: exp.Expression) -> str:
    return node.key.upper().replace("_", " ")
