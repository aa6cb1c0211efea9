"""The exit codes every `farm` command uses, one meaning each (README, "Exit codes").

Scripts and CI tell "something regressed or a job failed" from "you called it wrong" from "the run
is not finished" from "the farm itself is broken" by the code alone, without parsing output.
"""

from __future__ import annotations

OK = 0
FAILED = 1  # a regression was found, or a benchmark job failed (the farm worked; the result is bad)
USAGE = 2  # a usage or input error: bad option, missing or malformed file, unknown run or model
INCOMPLETE = 3  # the run is not finished: jobs in flight or writes waiting in the journal (farm run --resume)
INFRASTRUCTURE = 4  # the farm could not do its work: a host unreachable, the database lost, a disk full

MEANINGS = {OK: "ok", FAILED: "regression or failed job", USAGE: "usage or input error",
            INCOMPLETE: "incomplete run", INFRASTRUCTURE: "infrastructure error"}


def for_exception(exc: BaseException) -> int:
    """The code an error that reached the top stands for: its class says (FarmError.exit_code), else 4."""
    return int(getattr(exc, "exit_code", INFRASTRUCTURE))
