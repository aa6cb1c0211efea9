"""The last line before a traceback: database and file-system errors said as one paragraph.

Commands turn the errors they expect into FarmError themselves; this catches what reaches the
top anyway (a full disk mid-write, a read-only data folder) so the user still gets a sentence
saying what to do rather than a stack.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .errors import FarmError, InfrastructureError


def as_user_error(exc: SQLAlchemyError | OSError) -> FarmError:
    """One paragraph; an InfrastructureError (exit 4): the machine, not the command line, failed."""
    from .store.db import DB_URL_ENV

    if isinstance(exc, DBAPIError):
        reason = " ".join(str(exc.orig or exc).split())[:300]
        lowered = reason.lower()
        if "disk is full" in lowered or "no space left" in lowered:
            return InfrastructureError(f"the database's disk is full ({reason}); nothing more was stored. Free space "
                             f"where the database lives (FARM_DATA_DIR, --db or {DB_URL_ENV}) and run the command "
                             "again.")
        if "readonly database" in lowered or "read-only file system" in lowered:
            return InfrastructureError(f"the database cannot be written ({reason}). Make its file and folder writable, or "
                             f"point --db, {DB_URL_ENV} or FARM_DATA_DIR somewhere writable.")
        return InfrastructureError(f"database error: {reason}")
    if isinstance(exc, SQLAlchemyError):
        return InfrastructureError(f"database error: {' '.join(str(exc).split())[:300]}")
    where = f" {exc.filename}" if exc.filename else ""
    return InfrastructureError(f"cannot use{where}: {exc.strerror or exc}")
