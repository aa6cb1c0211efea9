"""Validity rules: is a succeeded result a measurement its job asked for? (MLPerf's VALID / INVALID.)

MLPerf's loadgen calls a run INVALID when it broke a rule of the scenario (too short, too few
queries) whatever its numbers say; farm does the same with its timing settings. A result breaks:

- ``max_seconds``: the timed loop was cut short by ``max_seconds`` before ``min_runs`` runs and
  ``min_seconds`` seconds were reached;
- ``min_runs``: it holds fewer timed runs than ``min_runs``;
- ``throttled``: the board throttled before, during or after the loop (``conditions``).

Invalid results stay stored and visible; speed-ups and nightly verdicts leave them out unless asked.
Interference (``disturbed``) is judged separately (``interference``): a loop can be valid and disturbed.
"""

__all__ = ["RULES", "check"]

RULES = ("max_seconds", "min_runs", "throttled")


def check(timing_settings, doc):
    """The ``validity`` sub-document of a succeeded result document ``doc`` run with ``timing_settings``."""
    broken = []
    timing = doc.get("timing") or {}
    runs = len(timing.get("samples_ns") or [])
    if timing.get("cut_short"):
        broken.append({"rule": "max_seconds", "detail": "timed loop cut short by max_seconds {:g} s after {} runs "
                       "and {:.2f} s (min_runs {}, min_seconds {:g})".format(
                           timing_settings["max_seconds"], runs, timing.get("timed_seconds") or 0.0,
                           timing_settings["min_runs"], timing_settings["min_seconds"])})
    if runs < timing_settings["min_runs"]:
        broken.append({"rule": "min_runs", "detail": "{} timed runs < min_runs {}".format(
            runs, timing_settings["min_runs"])})
    if doc.get("throttled"):
        during = (doc.get("conditions") or {}).get("during") or {}
        why = ", ".join(during.get("throttle_reasons") or []) or "throttling seen before, during or after the loop"
        broken.append({"rule": "throttled", "detail": "throttled: " + why})
    return {"valid": not broken, "broken": broken,
            "reason": "; ".join(item["detail"] for item in broken) if broken else None}
