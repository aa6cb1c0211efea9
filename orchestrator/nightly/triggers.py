"""What fires a nightly: toolchain changes on the controller or any host, the recompiles they call
for, and which change is the likely cause of a cell's change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from .. import toolchain
from ..errors import FarmError
from ..inventory import Host
from ..store.db import Store
from ..store.schema import ModelRow

COMPILER = "edgetpu_compiler"


def toolchain_probe(transport_options: dict[str, Any] | None = None,
                    compiler: str | None = None) -> Callable[[Store, list[Host], Any], list[dict[str, Any]]]:
    """A probe for ``run_nightly``: records this probe's versions, then returns every change since ``since``.

    Changes recorded by someone else in between (a `farm toolchain` run by hand) count too: the
    nightly asks "what changed since the last nightly", not "what did I see change".
    """

    def probe(store: Store, hosts: list[Host], since: Any) -> list[dict[str, Any]]:
        toolchain.probe_and_record(store, hosts, transport_options, compiler)
        # Stored with the nightly as JSON: the time goes as ISO 8601 text.
        return [{**change, "at": change["at"].isoformat() if change.get("at") else None}
                for change in toolchain.changes_since(store, since)]

    return probe


def compiler_changed(triggers: list[dict[str, Any]]) -> str | None:
    """The controller's new edgetpu_compiler version when tonight's triggers include one."""
    for change in reversed(triggers):
        if change.get("host") == toolchain.CONTROLLER and change.get("component") == COMPILER and change.get("new"):
            return str(change["new"])
    return None


def recompile_for(store: Store, triggers: list[dict[str, Any]], compiler: str | None = None,
                  say: Callable[[str], None] | None = None) -> list[ModelRow]:
    """Compile again, with the controller's new edgetpu_compiler, every model an older version compiled.

    Models that were co-compiled are co-compiled again (their parameter caches share the
    on-chip memory, so compiling them apart would change what is measured), and segmented
    models keep their segment count. Returns the new compiled models, each linked to its
    source so its cells keep their baselines.
    """
    new_version = compiler_changed(triggers)
    if new_version is None:
        return []
    from ..models.compiler import compile_models

    with store.session() as session:
        compiled = list(session.scalars(select(ModelRow).where(ModelRow.source == "compiled")
                                        .order_by(ModelRow.id)))
        by_id = {row.id: row for row in session.scalars(select(ModelRow))}
    by_name = {row.name: row for row in by_id.values()}
    done_tonight = {_group(row, by_id) for row in compiled if row.compiler_version == new_version}
    groups: set[tuple[tuple[str, ...], int]] = set()
    for row in compiled:
        if row.compiler_version != new_version and row.source_model_id in by_id:
            group = _group(row, by_id)
            if group not in done_tonight:
                groups.add(group)
    made: list[ModelRow] = []
    for names, segments in sorted(groups):
        sources = [by_name[name] for name in names if name in by_name]
        try:
            results = compile_models(store, sources, compiler=compiler, num_segments=segments)
        except FarmError as exc:
            if say is not None:
                say(f"recompiling {', '.join(s.name for s in sources)} with edgetpu_compiler {new_version} "
                    f"failed: {exc}")
            continue
        made.extend(result.row for result in results if result.created)
    return made


def _group(row: ModelRow, by_id: dict[int, ModelRow]) -> tuple[tuple[str, ...], int]:
    """The source models compiled together with ``row`` (itself included), and the segment count."""
    report = row.compile_report or {}
    own = by_id[row.source_model_id].name if row.source_model_id in by_id else row.name
    together = tuple(sorted({own, *(report.get("co_compiled_with") or [])}))
    return together, int(report.get("num_segments") or 1)


def likely_causes(cell_key: str, triggers: list[dict[str, Any]], local_hosts: set[str]) -> list[dict[str, Any]]:
    """The toolchain changes that could explain a change in this cell.

    A change on the cell's own host; the controller's compiler for Edge TPU cells (it made the
    model); any other controller change for hosts reached through the local transport, whose
    agents run on the controller machine itself.
    """
    host, _, rest = cell_key.partition("|")
    delegate = rest.split("|")[1] if rest.count("|") >= 1 else ""
    causes = []
    for change in triggers:
        where = change.get("host")
        if where == host:
            causes.append(change)
        elif where == toolchain.CONTROLLER:
            if change.get("component") == COMPILER:
                if delegate == "edgetpu":
                    causes.append(change)
            elif host in local_hosts:
                causes.append(change)
    return causes


def describe(change: dict[str, Any]) -> str:
    where = "controller" if change.get("host") == toolchain.CONTROLLER else change.get("host")
    return f"{where}: {change.get('component')} {change.get('old') or '(none)'} → {change.get('new')}"


def newest_compiles(models: list[ModelRow], store: Store) -> list[ModelRow]:
    """``models`` without compiled models that a newer compile of the same source replaced.

    Old and new compiles share a cell (their lineage), so running both would pool two compilers'
    samples into one verdict.
    """
    with store.session() as session:
        by_id = {row.id: row for row in session.scalars(select(ModelRow))}
    newest: dict[tuple[Any, ...], ModelRow] = {}
    for row in by_id.values():
        if row.source == "compiled" and row.source_model_id is not None:
            key = (row.source_model_id, _group(row, by_id), (row.compile_report or {}).get("segment"))
            if key not in newest or row.id > newest[key].id:
                newest[key] = row
    keep_ids = {row.id for row in newest.values()}
    return [m for m in models if m.source != "compiled" or m.source_model_id is None or m.id in keep_ids]
