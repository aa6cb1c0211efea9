"""Hostile files and strings given to farm's commands (issue 19 items 5, 6 and the repeatable probe).

Every command's file and string inputs, as a user gives them: each must end in bounded time with
a one-paragraph error or a normal result, never a traceback or a hang, in bounded memory, and a
command that fails must not lose what the store already held.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from orchestrator import cli
from orchestrator.bounded_read import read_bounded
from orchestrator.errors import InputError
from orchestrator.inventory import Host
from orchestrator.store import open_store, records

PROBES = settings(max_examples=25, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SECONDS_PER_COMMAND = 20
REVOKED = "@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"


def farm(*args: str, cwd: Path, env: dict[str, str] | None = None, preexec=None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False, preexec_fn=preexec,
                          env={**os.environ, "COLUMNS": "300", **(env or {})})


def one_paragraph_error(done: subprocess.CompletedProcess, words: str, code: int = 2) -> None:
    """One sentence, no traceback, and the exit code that says whose fault: 2 the input, 4 the machine."""
    assert done.returncode == code, (done.returncode, done.stdout[-500:], done.stderr[-1500:])
    assert "Traceback" not in done.stderr + done.stdout
    error = done.stderr.strip()
    assert error.startswith("error: ") and "\n\n" not in error, error
    assert words in " ".join(error.split()), error


def in_process(*args: str) -> tuple[int, str]:
    """farm's main() as the console script runs it, in this process: exit code and stderr."""
    stderr, stdout = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["farm", *args]
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            cli.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
    return code, stderr.getvalue()


# -- files that are not files, or too big -------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("args, words", [
    (["inventory", "show", "-i", "{fifo}"], "it is a FIFO (named pipe), not a regular file"),
    (["run", "-m", "m", "--matrix-file", "{fifo}"], "it is a FIFO (named pipe), not a regular file"),
    (["models", "add", "{fifo}"], "it is a FIFO (named pipe), not a regular file"),
    (["models", "check", "{fifo}.tflite"], "model file not found"),
    (["models", "add", "/dev/zero"], "/dev/zero: cannot read model file: it is a device"),
    (["models", "check", "/dev/zero"], "it is a device, not a regular file"),
    (["models", "add", "{tmp}"], "it is a directory, not a regular file"),
])
def test_files_that_are_not_regular_files_are_refused_at_once(tmp_path: Path, fifo: Path, args: list[str],
                                                              words: str) -> None:
    started = time.monotonic()
    done = farm(*[a.format(fifo=fifo, tmp=tmp_path) for a in args], cwd=tmp_path)
    one_paragraph_error(done, words)
    assert time.monotonic() - started < 60


def test_an_inventory_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as handle:  # 2.4 MB of hosts: parsing this took minutes and gigabytes
        handle.write("hosts:\n")
        for index in range(40_000):
            handle.write(f"  - {{name: h{index}, address: 10.0.{index // 250}.{index % 250}, port: 22}}\n")
    started = time.monotonic()
    one_paragraph_error(farm("inventory", "show", "-i", str(big), cwd=tmp_path), "raise FARM_MAX_YAML_MB")
    assert time.monotonic() - started < 30


def test_size_limits_are_configurable(tmp_path: Path, shared_model: Path) -> None:
    with pytest.raises(InputError, match=r"more than the 102400 bytes farm reads \(raise FARM_MAX_MODEL_MB"):
        read_bounded(shared_model, 100 * 1024, "FARM_MAX_MODEL_MB", "model file")
    done = farm("models", "add", str(shared_model), "--db", f"sqlite:///{tmp_path / 'f.db'}", cwd=tmp_path,
                env={"FARM_MAX_MODEL_MB": "0.1"})
    one_paragraph_error(done, "raise FARM_MAX_MODEL_MB to allow more")
    done = farm("models", "add", str(shared_model), "--db", f"sqlite:///{tmp_path / 'f.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# -- where output and data go -------------------------------------------------------------------------------

@pytest.mark.parametrize("target, words", [
    ("{tmp}/missing/out.csv", "the folder {tmp}/missing does not exist"),
    ("{tmp}", "it is a directory"),
    ("/dev/full", "cannot write /dev/full: No space left on device"),
])
def test_results_output_that_cannot_be_written_is_one_sentence(tmp_path: Path, target: str, words: str) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    done = farm("results", "-f", "csv", "-o", target.format(tmp=tmp_path), "--db", db, cwd=tmp_path)
    one_paragraph_error(done, words.format(tmp=tmp_path), 4 if target == "/dev/full" else 2)


def _small_disk(limit: int):  # type: ignore[no-untyped-def]
    def apply() -> None:
        # A file-size limit stands in for a full disk: writes past it fail with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_data_directory_leaves_no_partial_model_and_the_next_command_works(tmp_path: Path) -> None:
    env = {"FARM_DATA_DIR": str(tmp_path / "data")}
    done = farm("models", "build", "--family", "mobilenet_v1", cwd=tmp_path, env=env, preexec=_small_disk(400_000))
    one_paragraph_error(done, "cannot store the model in farm's cache", 4)
    assert [p.name for p in (tmp_path / "data" / "models").iterdir()] == []  # no .tmp<pid> left behind
    assert farm("models", "list", cwd=tmp_path, env=env).returncode == 0


def test_a_disk_full_during_the_first_open_is_one_paragraph_and_recoverable(tmp_path: Path) -> None:
    env = {"FARM_DATA_DIR": str(tmp_path / "data")}
    done = farm("results", cwd=tmp_path, env=env, preexec=_small_disk(40_000))
    one_paragraph_error(done, "cannot use the database", 4)
    done = farm("results", cwd=tmp_path, env=env)
    assert done.returncode == 0 and "No rows match" in done.stdout, done.stderr


def test_an_in_memory_database_url_is_refused(tmp_path: Path) -> None:
    one_paragraph_error(farm("results", "--db", "sqlite://", cwd=tmp_path), "is an in-memory SQLite database")


# -- inventories and matrices that used to be misread ---------------------------------------------------------

@pytest.mark.parametrize("name, content, words", [
    ("inv.yaml", "hosts:\n  - name: a\n    address: h\n    port: 0\n", "inv.yaml:4: field 'port': port 0 is out of range"),
    ("m.yaml", "matrices:\n  m:\n    models: []\n", "m.yaml:3: field 'models': an empty list names no model"),
    ("m.yaml", "matrices:\n  m:\n    threads: [1]\n    models: [conv_stack-l1, no_such_model]\n",
     "m.yaml:4: field 'models': no registered model matches 'no_such_model'"),
])
def test_misread_fields_are_refused_at_their_line(tmp_path: Path, name: str, content: str, words: str) -> None:
    (tmp_path / name).write_text(content)
    option = "--inventory" if name == "inv.yaml" else "--matrix-file"
    db = tmp_path / "f.db"
    done = farm("run", "-m", "m", option, name, "--db", f"sqlite:///{db}", cwd=tmp_path)
    one_paragraph_error(done, words)
    if db.exists():  # the unknown model is reported before the default suite is built, not after
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM models")).scalar() == 0
        engine.dispose()


@pytest.mark.parametrize("line", [REVOKED, REVOKED.replace("@revoked", "@cert-authority")])
def test_a_known_hosts_marker_line_fails_the_host_not_the_run(tmp_path: Path, line: str) -> None:
    from orchestrator.errors import TransportError
    from orchestrator.transport.ssh import SshTransport

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(line)
    transport = SshTransport(Host(name="h1", address="127.0.0.1", port=9), known_hosts=known_hosts)
    with pytest.raises(TransportError, match="@cert-authority and @revoked lines are not supported"):
        transport._transport()


def test_a_fifo_as_known_hosts_fails_the_host_at_once_instead_of_hanging(tmp_path: Path) -> None:
    from orchestrator.errors import TransportError
    from orchestrator.transport.ssh import SshTransport

    fifo = tmp_path / "known_hosts"
    os.mkfifo(fifo)  # paramiko would open it and wait for a writer forever
    transport = SshTransport(Host(name="h1", address="127.0.0.1", port=9), known_hosts=fifo)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            transport._transport()
        except BaseException as exc:  # noqa: BLE001 - whatever it raised is the outcome under test
            outcome.append(exc)

    worker = threading.Thread(target=connect, daemon=True)  # a hang must fail the test, not stall the suite
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the connect hangs on a FIFO known_hosts"
    assert isinstance(outcome[0], TransportError) and "is not a regular file" in str(outcome[0])


# -- the probe: random input to every command, in bounded time and memory ----------------------------------------

@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('probe') / 'farm.db'}"
    store = open_store(url)
    records.upsert_host(store, Host(name="h1", transport="local"))
    records.create_run(store, "all", "inv.yaml", [])
    store.close()
    return url


def stored(url: str) -> tuple[int, ...]:
    engine = create_engine(url)
    with engine.connect() as connection:
        counts = tuple(connection.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("hosts", "runs", "models"))
    engine.dispose()
    return counts


HOSTILE = ["$(reboot)", "`id`", "a;rm -rf ~", "'", '"', "\\", "%", "%s", "{x}", "\x00", "é", "名前", "\u202e",
           "--help", "-o", "../../etc/passwd", "*", "", " ", "\n", "9" * 40, "-1", "nan", "all", ":memory:"]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))
SQL_PIECES = ["SELECT", "1", "*", "FROM", "runs", "hosts", "v_results", "WHERE", ";", "DELETE", "DROP TABLE",
              "ATTACH", "PRAGMA", "journal_mode=DELETE", "WITH RECURSIVE c(x) AS (SELECT 1 UNION SELECT x+1 FROM c)",
              "UNION", "(", ")", "'", ":n", "--", "/*", "COPY", "INTO", "randomblob(1e9)", "zeroblob(1e9)",
              "load_extension('x')", "VACUUM", "INSERT", "UPDATE", "REINDEX", "ANALYZE", "BEGIN", "COMMIT"]
sql = st.one_of(hostile, st.lists(st.sampled_from(SQL_PIECES), min_size=1, max_size=8).map(" ".join))
yaml_text = st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["hosts: [", "hosts: &a [*a]", "matrices: {m: {models: []}}", "\ufeffhosts:",
                                       "a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nb: [*a, *a, *a, *a, *a, *a]"]))


def bounded(args: list[str], url: str) -> None:
    before = stored(url)
    started = time.monotonic()
    code, stderr = in_process(*args)
    assert time.monotonic() - started < SECONDS_PER_COMMAND, args
    assert "Traceback" not in stderr, (args, stderr)
    if code in (1, 4):
        assert stderr.lstrip().startswith("error: "), (args, stderr)
    # 2: a usage or input error (farm's or typer's own); 4: the database cannot be opened (exit_codes.py)
    assert code in (0, 1, 2, 4), (args, code, stderr)
    assert stored(url) == before, args


@PROBES
@given(statement=sql, value=hostile)
def test_probe_query(seeded: str, statement: str, value: str) -> None:
    bounded(["query", statement, "-p", f"n={value}", "--db", seeded], seeded)


@PROBES
@given(status=hostile, group=hostile, fmt=st.sampled_from(["table", "csv", "json", "x"]), host=hostile)
def test_probe_results(seeded: str, status: str, group: str, fmt: str, host: str) -> None:
    bounded(["results", "--status", status, "--host", host, "--group-by", group, "-f", fmt, "--db", seeded], seeded)


@PROBES
@given(content=yaml_text, matrix=hostile)
def test_probe_files_for_inventory_matrix_and_models(seeded: str, tmp_path: Path, content: str, matrix: str) -> None:
    path = tmp_path / "input.yaml"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    bounded(["inventory", "show", "-i", str(path)], seeded)
    bounded(["run", "-m", matrix or "m", "--matrix-file", str(path), "--host", "no-such-host", "--db", seeded], seeded)
    model = tmp_path / "input.tflite"
    model.write_bytes(content.encode("utf-8", "surrogateescape"))
    bounded(["models", "add", str(model), "--db", seeded], seeded)
    bounded(["models", "check", str(model)], seeded)


@settings(PROBES, max_examples=10)  # most of these create a database: seconds each
@given(url=st.one_of(hostile, st.sampled_from(["sqlite:", "sqlite://", "sqlite:///", "postgresql://", "mysql://x",
                                                "sqlite:///{tmp}/a?mode=ro", "sqlite:///{tmp}/%00",
                                                "postgresql+psycopg://nobody@127.0.0.1:1/x"])))
def test_probe_db_urls(seeded: str, tmp_path: Path, url: str) -> None:
    if "://" not in url:  # a bare string is a relative path for no scheme farm knows; keep it inside tmp
        url = f"sqlite:///{tmp_path}/{url.replace('/', '_')}"
    bounded(["results", "--db", url.replace("{tmp}", str(tmp_path))], seeded)


def test_the_probes_stayed_in_bounded_memory() -> None:
    # Runs after the probes in this module: the whole process never grew past this.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < 1500, peak_mb
