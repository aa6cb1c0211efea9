"""Limits users set through environment variables: one parser, one error wording."""

from __future__ import annotations

import os

from .errors import FarmError


def positive_env(name: str, kind: type, default: float, unit: str = "") -> float:
    """``$name`` as a positive ``kind``, or ``default`` when unset; anything else is a clear error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not value > 0:
        raise FarmError(f"{name}={raw!r} is not a positive {unit or kind.__name__}")
    return value
