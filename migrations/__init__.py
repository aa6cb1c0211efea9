"""Alembic migrations of the results database (``farm db upgrade`` applies them)."""
