"""pycoral's published reference files (benchmarks/reference/*.csv in google-coral/pycoral).

They are space-delimited with a header line: ``MODEL INFERENCE_TIME`` (the inference benchmarks), or
``MODEL DATA_SET TRAINING_TIME`` / ``MODEL DATA_SET INFERENCE_TIME`` (the imprinting benchmarks); every
column but the last names the environment, the last is a time in milliseconds. pycoral reads them with
``csv.reader(delimiter=' ', quotechar='|')`` and judges a result against a ±30 % band; the times are means
(``timeit`` over 200 invokes for Edge TPU models, 20 for CPU models).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..errors import FarmError
from .model import Reference, delegate_of, model_key

# header -> (metric, has a DATA_SET column)
HEADERS = {
    ("MODEL", "INFERENCE_TIME"): ("inference", False),
    ("MODEL", "DATA_SET", "INFERENCE_TIME"): ("inference", True),
    ("MODEL", "DATA_SET", "TRAINING_TIME"): ("training", True),
}
PYCORAL_BAND = 0.30


def parse_pycoral_csv(path: Path, board: str, settings: dict[str, Any] | None = None,
                      delegate: str | None = None, text: str | None = None) -> list[Reference]:
    """Every row of one reference file as a Reference; errors name the file, line and what was expected."""
    if text is None:
        from ..bounded_read import read_yaml_file

        raw = read_yaml_file(path)  # the same small-text-file limit as inventories (FARM_MAX_YAML_MB)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FarmError(f"{path}: not UTF-8 text (byte {exc.start}); expected pycoral's reference CSV") from None
    rows = list(csv.reader(io.StringIO(text), delimiter=" ", quotechar="|"))
    numbered = [(n, [cell for cell in row if cell != ""]) for n, row in enumerate(rows, start=1)]
    numbered = [(n, row) for n, row in numbered if row]
    if not numbered:
        raise FarmError(f"{path}: empty; expected a header line such as 'MODEL INFERENCE_TIME'")
    header_line, header = numbered[0]
    shape = HEADERS.get(tuple(cell.upper() for cell in header))
    if shape is None:
        expected = " or ".join(repr(" ".join(h)) for h in HEADERS)
        raise FarmError(f"{path}:{header_line}: header {' '.join(header)!r} is not a pycoral reference header; "
                        f"expected {expected}")
    metric, with_dataset = shape
    width = len(header)
    out: list[Reference] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in numbered[1:]:
        if len(row) != width:
            raise FarmError(f"{path}:{line}: {len(row)} field(s); expected {width} ({' '.join(header)})")
        try:
            value = float(row[-1])
        except ValueError:
            raise FarmError(f"{path}:{line}: time {row[-1]!r} is not a number (milliseconds expected)") from None
        if not math.isfinite(value) or value <= 0:
            raise FarmError(f"{path}:{line}: time {row[-1]!r} must be a positive number of milliseconds")
        model = model_key(row[0])
        dataset = row[1] if with_dataset else ""
        if (model, dataset) in seen:
            raise FarmError(f"{path}:{line}: {row[0]} is listed twice (first on line {seen[model, dataset]})")
        seen[model, dataset] = line
        out.append(Reference(board=board, model=model, delegate=delegate or delegate_of(model), value_ms=value,
                             source=path.name, settings=dict(settings or {}), metric=metric, dataset=dataset))
    if not out:
        raise FarmError(f"{path}: a header and no rows; expected one 'MODEL TIME' line per model")
    return out
