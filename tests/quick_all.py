"""The built-in `all` matrix at the shortest timing, for tests whose subject is what `all` covers, not its timings.

`all` times every cell for at least 0.5 s after 0.2 s of warm-up; a test that runs it over a lab or several
times spends most of its time there, measuring numbers nothing checks. The file's matrix is checked to be
the built-in one but for its timing, so such a test still speaks for `farm run --matrix all`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from orchestrator.matrix import all_matrix, load_matrix

QUICK_ALL = """
matrices:
  all:
    power_modes: all
    usb_ports: all
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0}
"""


def quick_all_matrix(folder: Path) -> Path:
    path = folder / "quick_all.yaml"
    path.write_text(QUICK_ALL)
    builtin = all_matrix()
    assert dataclasses.replace(load_matrix("all", path), timing=builtin.timing) == builtin
    return path
