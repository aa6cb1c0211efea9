"""Edge TPU twins: an imported compiled model with no source drops the count its own graph gave

A compiled file hides its source's arithmetic inside edgetpu-custom-op, so the count read from
its graph is only the CPU side (0.297 of the DeepLab twin's 1.736 GOP): GOPS from it are wrong.
Such a twin now has no total until its source is registered (`farm models add` links them and
gives the twin its source's count). Data only; no column changes.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-01 22:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    models = sa.table("models", sa.column("ops_per_inference", sa.BigInteger), sa.column("needs_edgetpu", sa.Boolean),
                      sa.column("source_model_id", sa.Integer), sa.column("source", sa.String))
    op.execute(models.update()
               .where(models.c.needs_edgetpu.is_(True), models.c.source_model_id.is_(None),
                      models.c.source == "imported")
               .values(ops_per_inference=None))


def downgrade() -> None:
    pass  # the dropped counts were wrong; nothing to restore
