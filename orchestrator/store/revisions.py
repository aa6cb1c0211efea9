"""The schema revision a database is at and the newest one farm has, read without loading alembic.

Every command that opens the store asks both; alembic's ScriptDirectory imports each migration module
and alembic itself (a third of a second on a small board or a busy machine) to answer. The migration
files name their revision and its predecessor on one line each, so the head is read from the text;
anything this reader cannot vouch for (a merge revision, two heads, a file it cannot parse) returns
None and the caller asks alembic, which stays the authority for migrating.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Connection, inspect, text

VERSIONS_TABLE = "alembic_version"
_REVISION = re.compile(r"""^revision\s*=\s*['"]([^'"]+)['"]\s*$""", re.MULTILINE)
_DOWN = re.compile(r"""^down_revision\s*=\s*(?:None|['"]([^'"]+)['"])\s*$""", re.MULTILINE)


def head_from_files(versions_dir: Path) -> str | None:
    """The one revision no other migration file names as its predecessor, or None if that is not clear-cut."""
    revisions: set[str] = set()
    predecessors: set[str] = set()
    for path in versions_dir.glob("*.py"):
        if path.name == "__init__.py":
            continue
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None  # a merge (a tuple of predecessors) or an odd file: alembic decides
        revisions.add(revision[0])
        if down[0]:
            predecessors.add(down[0])
    heads = revisions - predecessors
    if len(heads) != 1 or not predecessors <= revisions:
        return None
    return heads.pop()


def stored_revision(connection: Connection) -> tuple[bool, str | None]:
    """(answered, revision): the one version row of the database; (False, None) when alembic must look."""
    if not inspect(connection).has_table(VERSIONS_TABLE):
        return True, None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSIONS_TABLE}")).scalars().all()
    if len(rows) > 1:
        return False, None  # a database on several branches: alembic's business
    return True, (rows[0] if rows else None)
