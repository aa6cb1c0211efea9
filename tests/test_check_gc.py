"""`farm inventory check` leaves what was loaded before it out of the collections during its fan-out."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from orchestrator import facts_check
from orchestrator.gc_pause import old_objects_frozen
from orchestrator.inventory import Host


def test_objects_alive_before_the_fan_out_are_frozen_during_it_only(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    kept = [object()]  # a container made before the check: the collector tracks it
    seen: list[int] = []
    real = facts_check.check_host

    def observed(host: Host, options: dict, linger: bool = True) -> facts_check.HostCheck:
        seen.append(gc.get_freeze_count())
        return real(host, options, linger)

    monkeypatch.setattr(facts_check, "check_host", observed)
    hosts = [Host(name=f"local{i}", transport="local", python=sys.executable) for i in range(3)]
    assert gc.get_freeze_count() == 0
    checks = facts_check.check_hosts(hosts, {})
    assert [c.error for c in checks] == [None] * 3 and all(c.facts for c in checks)
    assert len(seen) == 3 and min(seen) > len(gc.get_objects()) // 2  # what was there is frozen ...
    assert gc.get_freeze_count() == 0 and gc.is_tracked(kept)  # ... and back in the collector's care after


def test_a_freeze_someone_else_made_is_left_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with old_objects_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_garbage_cycles_made_inside_are_still_collected() -> None:
    class Node:
        pass

    with old_objects_frozen():
        node = Node()
        node.me = node  # a cycle, unreachable once the name goes
        del node
        assert gc.collect() >= 1
