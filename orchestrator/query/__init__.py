"""`farm query`: ad-hoc SQL against the store, read-only and bounded whatever the statement tries."""

from .limits import QueryLimits
from .run import read_only_query

__all__ = ["QueryLimits", "read_only_query"]
