"""The results store: schema, migrations and the records farm keeps."""

from .db import Store, default_db_url, open_store, upgrade

__all__ = ["Store", "default_db_url", "open_store", "upgrade"]
