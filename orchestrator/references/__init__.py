"""Published reference times: parsed from pycoral's CSVs and the seeds' tables, stored, matched to results."""

from .model import Reference, model_key
from .pycoral_csv import parse_pycoral_csv
from .stored import import_references, list_references

__all__ = ["Reference", "import_references", "list_references", "model_key", "parse_pycoral_csv"]
