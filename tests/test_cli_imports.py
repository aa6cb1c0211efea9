"""Short commands load only what they use: a behaviour test of which modules a command imports, not a timed one.

`farm --help` needs typer and Rich; `farm results` needs SQLAlchemy too, but not pandas, numpy,
matplotlib, alembic (the database is current) or the SSH stack. Each runs in a fresh interpreter, as a
user's shell would start it, and reports the top-level packages it ended up with. The timings live in
bench/cli_startup.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.seed_data import load_seed

HEAVY = ("pandas", "numpy", "matplotlib", "alembic", "scipy", "pyarrow", "paramiko", "fabric", "sqlglot",
         "tflite_runtime", "tflite")
PROBE = """
import json, sys
sys.argv = ["farm", *json.loads(sys.argv[1])]
from orchestrator.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({name.split(".")[0] for name in sys.modules})
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


def loaded_by(*args: str) -> tuple[set[str], str]:
    """The top-level packages `farm ARGS` imported in a fresh interpreter, and what it printed."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ, "COLUMNS": "400"})
    marker = [line for line in done.stderr.splitlines() if line.startswith("PROBE ")]
    assert marker, done.stderr[-2000:]
    report = json.loads(marker[-1][len("PROBE "):])
    assert report["code"] in (0, None), done.stdout[-1000:] + done.stderr[-2000:]
    return set(report["loaded"]), done.stdout


def test_farm_help_imports_no_database_report_or_ssh_stack() -> None:
    loaded, shown = loaded_by("--help")
    assert "results" in shown and "inventory" in shown  # it did print the help
    assert {"typer", "rich"} <= loaded
    assert loaded.isdisjoint({*HEAVY, "sqlalchemy", "psycopg", "yaml"}), sorted(loaded & {*HEAVY, "sqlalchemy"})


def test_importing_the_cli_imports_no_heavy_module() -> None:
    probe = "import sys, orchestrator.cli; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe],
                          capture_output=True, text=True, check=True, timeout=120)
    assert set(done.stdout.split()).isdisjoint({*HEAVY, "sqlalchemy"})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    from orchestrator.store import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('imports') / 'farm.db'}"
    store = open_store(url)
    try:
        load_seed(store)
    finally:
        store.close()
    return url


def test_farm_results_reads_a_current_database_without_pandas_or_alembic(seeded: str) -> None:
    loaded, shown = loaded_by("results", "--db", seeded, "--model", "conv_stack")
    assert "conv_stack-l10" in shown and "1200.500" in shown  # the seed's rows, as a table
    assert "sqlalchemy" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_farm_results_as_csv_still_goes_through_pandas(seeded: str) -> None:
    # The exports keep their one frame (same columns as `farm report --export`): only the table is pandas-free.
    loaded, shown = loaded_by("results", "--db", seeded, "--format", "csv")
    assert shown.startswith("run_id,") and "pandas" in loaded


def test_long_tables_are_aligned_plain_text_every_row_and_cell_kept(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.output import print_rows
    from orchestrator.text_table import RICH_MAX_ROWS

    records = [{"run_id": n, "host": f"pi-{n % 7}", "median_ms": n / 3, "usb_port": None}
               for n in range(RICH_MAX_ROWS + 50)]
    print_rows(["run_id", "host", "median_ms", "usb_port"], records, headings={"run_id": "run"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(records) + 2 and lines[0].split() == ["run", "host", "median_ms", "usb_port"]
    assert set(lines[1]) <= {"-", " "}
    # Columns line up: every cell of a column starts where its heading does.
    start = lines[0].index("median_ms")
    assert all(line[start:].split()[0] == f"{r['median_ms']:.3f}" for line, r in zip(lines[2:], records, strict=True))
    assert lines[2 + 149].split() == ["149", "pi-2", "49.667"]  # None is an empty cell, not "None"
