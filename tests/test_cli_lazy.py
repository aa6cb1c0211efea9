"""The command line's loading machinery: commands built on first use, and values typer need not coerce.

Both change how the command line is put together, never what a command receives: each test here holds the
lazy path to what typer itself does with the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from orchestrator.cli.lazy import Entry, LazyCommands, click_command
from orchestrator.cli.quick_values import QuickValues, already_typed

RECEIVED: list[dict[str, Any]] = []


def sample(
    name: Annotated[str, typer.Option("--name")] = "x",
    count: Annotated[int, typer.Option("--count")] = 3,
    ratio: Annotated[float, typer.Option("--ratio")] = 0.5,
    tags: Annotated[list[str] | None, typer.Option("--tag")] = None,
    sizes: Annotated[list[int] | None, typer.Option("--size")] = None,
    where: Annotated[Path | None, typer.Option("--where")] = None,
    loud: Annotated[bool, typer.Option("--loud")] = False,
) -> None:
    RECEIVED.append({"name": name, "count": count, "ratio": ratio, "tags": tags, "sizes": sizes, "where": where,
                     "loud": loud})


def typers_own() -> Any:
    app = typer.Typer(add_completion=False)
    app.command()(sample)
    return typer.main.get_command(app)


def received(command: Any, args: list[str]) -> tuple[Any, str]:
    """What the function got from `command ARGS` (or the error's message)."""
    RECEIVED.clear()
    try:
        command.main(args, standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return None, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
    return RECEIVED[-1], ""


@pytest.mark.parametrize("args", [
    [], ["--name", "nano-1"], ["--count", "7"], ["--count", "x"], ["--ratio", "2"], ["--tag", "a", "--tag", "b"],
    ["--size", "224", "--size", "300"], ["--size", "big"], ["--where", "out/x.csv"], ["--loud"],
], ids=" ".join)
def test_quick_values_give_the_command_what_typer_gives_it(args: list[str]) -> None:
    quick = click_command("sample", sample)
    assert any(isinstance(p._runtime_param, QuickValues) for p in quick.params)  # the quick path is on
    assert received(quick, args) == received(typers_own(), args)


def test_quick_values_keep_only_values_already_of_their_type() -> None:
    assert already_typed(str, "a") and already_typed(int, 3) and already_typed(list[str], ("a", "b"))
    assert not already_typed(int, "3") and not already_typed(int, True) and not already_typed(list[int], ("3",))
    assert not already_typed(Path, "x") and not already_typed(list[str], "ab")


def test_lazy_commands_build_a_command_once_and_only_when_read() -> None:
    built: list[str] = []

    def loader(name: str, entry: Entry) -> str:
        built.append(name)
        return f"command {name}"

    commands = LazyCommands({"a": Entry("m", "a", "A."), "b": Entry("m", "b", "B.")}, loader)
    assert list(commands) == ["a", "b"] and len(commands) == 2 and "b" in commands and built == []
    assert commands["b"] == "command b" and commands["b"] == "command b" and built == ["b"]
    assert commands.get("c") is None and built == ["b"]
    commands["c"] = "added"
    assert list(commands) == ["a", "b", "c"] and built == ["b"]


def test_the_collector_pauses_for_a_block_and_resumes_as_it_was() -> None:
    import gc

    from orchestrator.gc_pause import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested (farm results' read inside its command): still paused after
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # one that was off stays off
    finally:
        gc.enable()
    with collector_paused():
        kept = [[n] for n in range(5000)]  # far more than a young collection's 700
    # What the block made counts as old: no young collection is due, none of it is frozen for good.
    assert gc.isenabled() and gc.get_count()[0] < 700 and gc.get_freeze_count() == 0 and len(kept) == 5000
    with collector_paused():
        cycle: list[object] = []
        cycle.append(cycle)  # a cycle made in the block is still found by a full collection
    del cycle
    gc.collect()
    assert gc.garbage == [] and not any(isinstance(o, list) and len(o) == 1 and o[0] is o for o in gc.get_objects())


def test_a_command_that_skips_the_exit_collection_exits_with_its_objects_frozen() -> None:
    import subprocess
    import sys

    # The first atexit handler registered runs last: it sees what skip_exit_collection's handler did.
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: sys.stdout.write(f'frozen {gc.get_freeze_count()}\\n'))\n"
             "from orchestrator.gc_pause import skip_exit_collection\n"
             "skip_exit_collection(); skip_exit_collection()\n"
             "rows = [[n] for n in range(1000)]\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert int(done.stdout.split()[-1]) >= 1000, done.stdout
    unfrozen = subprocess.run([sys.executable, "-c", probe.replace("skip_exit_collection(); skip_exit_collection()",
                                                                     "pass")],
                              capture_output=True, text=True, check=True, timeout=60)
    assert unfrozen.stdout.split()[-1] == "0"
