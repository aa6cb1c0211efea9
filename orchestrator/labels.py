"""Run labels: what a run measured (`--label commit=abc --label firmware=5.1`), stored with the run.

Tags choose hosts from the inventory; labels say what is under test, so they are free key=value text
that reports show and every reader of results can select runs by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import FarmError

KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")
MAX_VALUE = 500


def parse_labels(items: Iterable[str] | None, *, option: str = "--label") -> dict[str, str]:
    """``["commit=abc", "firmware=5.1"]`` as a mapping; a key given twice keeps its last value, as options do."""
    labels: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        _check(item, key, option)
        if not sep or not value.strip():
            raise FarmError(f"{option} '{item}': give KEY=VALUE, e.g. {option} commit=3f2a9c1")
        labels[key] = value.strip()
    return labels


def parse_selectors(items: Iterable[str] | None, *, option: str = "--label") -> tuple[tuple[str, str | None], ...]:
    """Label selectors for reading results: ``key=value`` (that value) or ``key`` (any value)."""
    selectors = []
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        _check(item, key, option)
        selectors.append((key, value.strip() if sep else None))
    return tuple(selectors)


def matches(labels: Mapping[str, object] | None, selectors: Iterable[tuple[str, str | None]]) -> bool:
    """Whether a run with these labels carries every selector."""
    labels = labels or {}
    return all(key in labels and (value is None or str(labels[key]) == value) for key, value in selectors)


def format_labels(labels: Mapping[str, object] | None) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted((labels or {}).items()))


def _check(item: str, key: str, option: str) -> None:
    if "\x00" in item:
        raise FarmError(f"{option} {item!r} contains a NUL character")
    if len(item) > MAX_VALUE:
        raise FarmError(f"{option} is {len(item)} characters long; a label holds at most {MAX_VALUE}")
    if not KEY.fullmatch(key):
        raise FarmError(f"{option} '{item}': the key '{key}' must be letters, digits and _ . : / - "
                        "(starting with a letter, digit or _), e.g. commit=3f2a9c1")
