"""What fires a nightly: toolchain changes on the controller or any host, and the recompiles they call for."""

from __future__ import annotations

from typing import Any

from ..inventory import Host
from ..store.db import Store
from ..store.schema import ModelRow


def probe_toolchains(store: Store, hosts: list[Host], since: Any) -> list[dict[str, Any]]:
    try:
        from .. import toolchain
    except ImportError:  # TODO(integration): toolchain detection lands with issue 5
        return []
    toolchain.probe_and_record(store, hosts)
    return [dict(change) for change in toolchain.changes_since(store, since)]


def recompile_for(store: Store, triggers: list[dict[str, Any]]) -> list[ModelRow]:
    return []
