"""`farm db`: the results database's schema."""

from __future__ import annotations

import typer

from .options import DbOption
from .output import console

db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Migrate the database to the schema this farm needs.

    Example: farm db upgrade --db postgresql+psycopg://127.0.0.1:5432/test
    """
    from ..store import db as store_db

    url = db or store_db.default_db_url()
    before, after = store_db.upgrade(url)
    if before == after:
        console.print(f"{store_db.safe_url(url)} is already at schema {after}.")
    else:
        console.print(f"{store_db.safe_url(url)} migrated from {before or 'empty'} to {after}.")
