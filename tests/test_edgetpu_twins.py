"""Edge TPU twins as users have them: Coral's published DeepLab pair paired, and `farm models check`
predicting what the real compiler did to it (issue 14)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.errors import FarmError
from orchestrator.models import registry, twins
from orchestrator.models.edgetpu_check import MORE_THAN_ONE_SUBGRAPH, check_model
from orchestrator.models.edgetpu_limits import LIMITATION
from orchestrator.store import open_store
from tests.conftest import SHARED_MODELS
from tests.test_cli_run import farm

DEEPLAB = SHARED_MODELS / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
DEEPLAB_TWIN = SHARED_MODELS / "deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite"
# What the published twin holds outside its edgetpu-custom-op (../shared/models/README.md).
PUBLISHED_CPU = Counter({"CONV_2D": 2, "RESIZE_BILINEAR": 3, "QUANTIZE": 1, "CONCATENATION": 1, "ARG_MAX": 1})
SOURCE_GOP = 1.736  # the issue: the source's operations per inference
CPU_SIDE_GOP = 0.297  # the issue: what counting the twin's own graph gives (the CONV_2D left outside)


def test_coral_names_say_what_a_compiled_file_is() -> None:
    assert twins.parse_twin_name("deeplabv3_mnv2_dm05_pascal_quant_edgetpu") == \
        twins.TwinName("deeplabv3_mnv2_dm05_pascal_quant", "compiled")
    co = twins.parse_twin_name("inception_v1_224_quant_cocompiled_with_inception_v4_299_quant_edgetpu")
    assert co == twins.TwinName("inception_v1_224_quant", "co-compiled", ("inception_v4_299_quant",))
    segment = twins.parse_twin_name("inception_v3_299_quant_segment_1_of_3_edgetpu")
    assert segment == twins.TwinName("inception_v3_299_quant", "segment", segment=1, num_segments=3)
    assert twins.parse_twin_name("mobilenet_v1_1.0_224_quant") is None


def test_twin_added_first_is_unlinked_then_links_when_its_source_comes(db_url: str) -> None:
    store = open_store(db_url)
    try:
        twin, _ = registry.add_file(store, DEEPLAB_TWIN)
        assert twin.needs_edgetpu and twin.source_model_id is None
        assert twin.ops_per_inference is None  # left empty, not the CPU side's 0.297 GOP
        assert twin.op_counts["file_operators"]["RESIZE_BILINEAR"] == 3
        source, _ = registry.add_file(store, DEEPLAB)
        assert round(source.ops_per_inference / 1e9, 3) == SOURCE_GOP
        [linked] = twins.twins_of(store, source)
        assert linked.id == twin.id and linked.ops_per_inference == source.ops_per_inference
        assert twins.cpu_ops_of(linked) == PUBLISHED_CPU
    finally:
        store.close()


def test_twin_added_after_its_source_links_by_name_or_by_source_option(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        source, _ = registry.add_file(store, DEEPLAB, name="deeplab")  # another name: the file stem still pairs
        twin, _ = registry.add_file(store, DEEPLAB_TWIN)
        assert twin.source_model_id == source.id and round(twin.ops_per_inference / 1e9, 3) == SOURCE_GOP
        # What the twin's own graph counts, the CPU side only: why the twin carries its source's count instead.
        assert round(registry.op_counts_of(DEEPLAB_TWIN.read_bytes())["total"] / 1e9, 3) == CPU_SIDE_GOP
    finally:
        store.close()
    renamed = tmp_path / "seg_model.tflite"  # a name that points at nothing: --source FILE pairs it
    shutil.copyfile(DEEPLAB_TWIN, renamed)
    store = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        twin, _ = registry.add_file(store, renamed, source=str(DEEPLAB))
        assert twin.source_model_id is not None and round(twin.ops_per_inference / 1e9, 3) == SOURCE_GOP
        with pytest.raises(FarmError, match="not compiled for the Edge TPU"):
            registry.add_file(store, DEEPLAB, name="again", source="seg_model")
        with pytest.raises(FarmError, match="itself compiled"):
            registry.add_file(store, SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
                              source="seg_model")
    finally:
        store.close()


def test_check_predicts_the_eight_cpu_operations_of_the_published_twin() -> None:
    report = check_model(DEEPLAB.read_bytes())
    assert report.cpu_by_op() == PUBLISHED_CPU and (report.tpu_ops, report.cpu_ops) == (64, 8)
    first = report.ops[report.ended_by]
    assert (first.op, first.status) == ("RESIZE_BILINEAR", LIMITATION)
    dependents = [v for v in report.ops if not v.on_tpu and v.index != first.index]
    assert all(v.depends_on == first.index for v in dependents)
    assert {v.status for v in dependents if v.op != "ARG_MAX"} == {MORE_THAN_ONE_SUBGRAPH}
    # The two convolutions before the resize feed the CPU side but stay on the Edge TPU.
    assert [v.on_tpu for v in report.ops[62:64]] == [True, True]


def test_cli_add_show_and_check_against_the_published_twin(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    added = farm("models", "add", str(DEEPLAB_TWIN), "--db", db).stdout
    assert "unlinked twin" in added
    shown = farm("models", "show", "deeplabv3_mnv2_dm05_pascal_quant_edgetpu", "--db", db).stdout
    assert "unlinked" in shown and "GOPS are left empty" in shown and "ops/inference  │ unknown" in shown
    assert "linked twin: deeplabv3_mnv2_dm05_pascal_quant_edgetpu" in farm("models", "add", str(DEEPLAB), "--db",
                                                                           db).stdout
    shown = farm("models", "show", "deeplabv3_mnv2_dm05_pascal_quant_edgetpu", "--db", db).stdout
    assert "of deeplabv3_mnv2_dm05_pascal_quant" in shown and "1.736 GOP" in shown
    checked = farm("models", "check", "deeplabv3_mnv2_dm05_pascal_quant", "--db", db, check=False)
    assert checked.returncode == 1
    lines = checked.stdout.strip().splitlines()
    assert lines[-1] == "64 of 72 operations map to the Edge TPU; 8 run on the CPU."
    assert "The Edge TPU subgraph ends at RESIZE_BILINEAR #64" in checked.stdout
    assert "depends on RESIZE_BILINEAR #64" in checked.stdout
    assert "The prediction matches deeplabv3_mnv2_dm05_pascal_quant_edgetpu: 8 operations on the CPU." \
        in checked.stdout
    listed = farm("models", "list", "--db", db).stdout
    assert "compiled from deeplabv3_mnv2_dm05_pascal_quant (published)" in listed


def test_upgrading_drops_the_cpu_side_count_of_a_twin_registered_before(db_url: str) -> None:
    """Before 0014 an unlinked twin kept its own graph's count (the CPU side): the upgrade empties it."""
    from alembic import command
    from sqlalchemy import text

    from orchestrator.store import db as store_db

    engine = store_db.create_db_engine(db_url)
    with engine.begin() as connection:
        config = store_db._alembic_config(db_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0011")
        insert = text("insert into models (sha256, name, family, params, source, path, size_bytes, inputs, outputs, "
                      "ops_per_inference, needs_edgetpu, created_at, source_model_id) values (:sha, :name, 'imported', "
                      "'{}', :source, '/x', 1, '[]', '[]', :ops, :tpu, CURRENT_TIMESTAMP, :parent)")
        connection.execute(insert, {"sha": "a" * 64, "name": "src", "source": "imported", "ops": 1736, "tpu": False,
                                    "parent": None})
        parent = connection.execute(text("select id from models where name = 'src'")).scalar()
        for name, source, link in (("twin", "imported", None), ("linked", "imported", parent),
                                   ("compiled", "compiled", parent)):
            connection.execute(insert, {"sha": name[0] * 64, "name": name, "source": source, "ops": 297,
                                        "tpu": True, "parent": link})
    engine.dispose()
    store_db.upgrade(db_url)
    store = open_store(db_url)
    try:
        with store.engine.connect() as connection:
            counts = dict(connection.execute(text("select name, ops_per_inference from models")).all())
    finally:
        store.close()
    assert counts == {"src": 1736, "twin": None, "linked": 297, "compiled": 297}
