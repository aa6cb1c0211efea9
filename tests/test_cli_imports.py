"""Short commands load only what they use: a behaviour test of which modules a command imports, not a timed one.

`farm --help` needs typer alone: no command module (the group lists them from its table), no Rich (click's
plain help), no SQLAlchemy. `farm results` needs SQLAlchemy Core and Rich too, but not SQLAlchemy's ORM,
pandas, numpy, matplotlib, alembic (the database is current), pydantic (typer's coercion of values that
already have their type is skipped) or the SSH stack, nor any other command's module. Each runs in a fresh
interpreter, as a user's shell would start it, and reports the modules it ended up with. The timings live
in bench/cli_startup.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from orchestrator.cli import COMMANDS
from tests.seed_data import load_seed

HEAVY = ("pandas", "numpy", "matplotlib", "alembic", "scipy", "pyarrow", "paramiko", "fabric", "sqlglot",
         "tflite_runtime", "tflite", "pydantic", "markdown_it", "pygments", "yaml")
COMMAND_MODULES = {f"orchestrator.cli.{entry.module}" for entry in COMMANDS.values()}
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
loaded = sorted(sys.modules)
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


def loaded_by(*args: str) -> tuple[set[str], set[str], str]:
    """The top-level packages and the modules `farm ARGS` imported in a fresh interpreter, and what it printed."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ, "COLUMNS": "400"})
    marker = [line for line in done.stderr.splitlines() if line.startswith("PROBE ")]
    assert marker, done.stderr[-2000:]
    report = json.loads(marker[-1][len("PROBE "):])
    assert report["code"] in (0, None), done.stdout[-1000:] + done.stderr[-2000:]
    modules = set(report["loaded"])
    return {name.split(".")[0] for name in modules}, modules, done.stdout


def test_farm_help_imports_typer_alone() -> None:
    loaded, modules, shown = loaded_by("--help")
    assert "results" in shown and "inventory" in shown  # it did print the help
    for name, entry in COMMANDS.items():  # every command, with its line of help
        assert name in shown and entry.help.split()[0] in shown, name
    assert "typer" in loaded
    assert loaded.isdisjoint({*HEAVY, "rich", "sqlalchemy", "psycopg", "farm_lab"}), \
        sorted(loaded & {*HEAVY, "rich", "sqlalchemy", "farm_lab"})
    assert modules.isdisjoint(COMMAND_MODULES), sorted(modules & COMMAND_MODULES)


def test_importing_the_cli_imports_no_heavy_module() -> None:
    probe = "import sys, orchestrator.cli; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe],
                          capture_output=True, text=True, check=True, timeout=120)
    modules = set(done.stdout.split())
    assert {m.split(".")[0] for m in modules}.isdisjoint({*HEAVY, "sqlalchemy", "rich"})
    assert modules.isdisjoint(COMMAND_MODULES), sorted(modules & COMMAND_MODULES)


def test_each_listed_help_is_its_commands_own_first_paragraph() -> None:
    # The table is what `farm --help` shows without loading a command: it must say what the command says.
    import inspect

    from orchestrator.cli import app
    from orchestrator.cli.lab import HELP as LAB_HELP

    group = typer.main.get_command(app)
    for name, entry in COMMANDS.items():
        command = group.commands[name]  # loaded here, by the table's module and attribute
        own = LAB_HELP if name == "lab" else command.help
        first = " ".join(inspect.cleandoc(own or "").split("\n\n")[0].split())
        assert entry.help == first, (name, entry.help, first)
    assert list(group.commands) == list(COMMANDS)  # listed in the table's order, nothing more


def test_a_mistyped_command_is_still_told_the_nearest_one() -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    done = CliRunner().invoke(app, ["resulst"])
    assert done.exit_code == 2 and "Did you mean 'results'?" in done.output, done.output


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


def test_farm_results_reads_a_current_database_without_pandas_alembic_orm_or_other_commands(seeded: str) -> None:
    loaded, modules, shown = loaded_by("results", "--db", seeded, "--model", "conv_stack")
    assert "conv_stack-l10" in shown and "1200.500" in shown  # the seed's rows, as a table
    assert "sqlalchemy" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "sqlalchemy.orm" not in modules and "orchestrator.store.schema" not in modules
    assert modules & COMMAND_MODULES == {"orchestrator.cli.results"}, sorted(modules & COMMAND_MODULES)


def test_farm_results_with_a_number_in_text_still_goes_through_typers_coercion(seeded: str) -> None:
    # Only values that already have their type skip it: "--threads 4" is text for an int option.
    loaded, _, shown = loaded_by("results", "--db", seeded, "--model", "conv_stack", "--threads", "4")
    assert "conv_stack-l10" in shown and "pydantic" in loaded


def test_farm_results_as_csv_still_goes_through_pandas(seeded: str) -> None:
    # The exports keep their one frame (same columns as `farm report --export`): only the table is pandas-free.
    loaded, _, shown = loaded_by("results", "--db", seeded, "--format", "csv")
    assert shown.startswith("run_id,") and "pandas" in loaded


def test_the_filters_core_runs_table_has_the_orms_types() -> None:
    from orchestrator.results.filters import RUNS
    from orchestrator.store.schema import RunRow

    for column in RUNS.c:
        orm = RunRow.__table__.c[column.name].type
        assert type(column.type) is type(orm), column.name
        assert getattr(column.type, "timezone", None) == getattr(orm, "timezone", None), column.name


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
