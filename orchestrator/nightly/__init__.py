"""Nightly regression runs: toolchain triggers, trials, baselines, verdicts and their reports."""
