"""Job states, failure classes and the retry policy: what a failure means and what happens next.

Infrastructure failures (the host, the link, the agent) say nothing about the
benchmark, so the job is retried with backoff; benchmark failures (the model
does not load, invoke fails) would fail again, so they are final. A host that
keeps failing for infrastructure reasons is marked unhealthy (LAVA's *Bad*)
and gets no jobs until a health check passes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

STATES = ("queued", "dispatched", "running", "succeeded", "failed", "skipped", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})
IN_FLIGHT = frozenset({"dispatched", "running"})

# failure -> class. "agent-error" is an infrastructure fault the agent itself reported (a missing
# model file, sudo refused): the board may be fixed by a retry on a fresh connection.
FAILURES = {
    "unreachable": "infrastructure",
    "link-lost": "infrastructure",
    "agent-died": "infrastructure",
    "host-key": "infrastructure",
    "disk-full": "infrastructure",
    "lock-busy": "infrastructure",
    "agent-error": "infrastructure",
    "load-error": "benchmark",
    "invoke-error": "benchmark",
    "unsupported": "unsupported",
}


def failure_class(failure: str) -> str:
    return FAILURES.get(failure, "infrastructure")


def classify_transport_error(message: str, *, during_job: bool) -> str:
    """The failure a TransportError (or OSError) stands for, from its message."""
    text = message.lower()
    if "host key" in text or "known_hosts" in text:
        return "host-key"
    if "no space left" in text or "disk full" in text or "enospc" in text:
        return "disk-full"
    return "link-lost" if during_job else "unreachable"


def classify_agent_error(kind: str, message: str) -> str:
    """The failure of a result the agent returned as failed: {"kind", "message"}."""
    text = message.lower()
    if kind == "benchmark":
        return "invoke-error" if "invoke" in text else "load-error"
    if kind == "unsupported":
        return "unsupported"
    if "no space left" in text:
        return "disk-full"
    return "agent-error"


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"environment variable {name} must not be negative, got {value!r}")
    return number


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently infrastructure failures are retried."""

    retries: int = 3  # attempts after the first
    backoff: float = 1.0  # seconds before the first retry, doubling
    max_backoff: float = 60.0
    unhealthy_after: int = 3  # infrastructure failures in a row that make a host unhealthy

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(retries=int(_env_number("FARM_RETRIES", cls.retries)),
                   backoff=_env_number("FARM_RETRY_BACKOFF", cls.backoff),
                   max_backoff=_env_number("FARM_RETRY_MAX_BACKOFF", cls.max_backoff),
                   unhealthy_after=max(1, int(_env_number("FARM_UNHEALTHY_AFTER", cls.unhealthy_after))))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 is the first retry)."""
        if attempt <= 1:
            return 0.0
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 2))

    def may_retry(self, failure: str, attempt: int) -> bool:
        """Whether a job whose attempt ``attempt`` failed this way runs again."""
        return failure_class(failure) == "infrastructure" and attempt <= self.retries
