"""The controller's spool keys: ``f<db tag>-run<run>-job<job>.<attempt>``, made and read in one place.

The tag names the database, so two controllers with databases of their own never share a key,
and a controller can tell its own leftovers in a device's spool from another's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_KEY = re.compile(r"f(?P<tag>[0-9a-f]{6})-run(?P<run>\d+)-job(?P<job>\d+)\.(?P<attempt>\d+)\Z")


def database_tag(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:6]


def job_name(url: str, run_id: int, job_id: int) -> str:
    """The job id the agent sees; the spool key is this plus ``.<attempt>``."""
    return f"f{database_tag(url)}-run{run_id}-job{job_id}"


@dataclass(frozen=True)
class SpoolKey:
    tag: str
    run_id: int
    job_id: int
    attempt: int


def parse(key: str) -> SpoolKey | None:
    """The parts of one of our keys, or None for a key some other tool or format made."""
    match = _KEY.match(key)
    if match is None:
        return None
    return SpoolKey(match["tag"], int(match["run"]), int(match["job"]), int(match["attempt"]))
