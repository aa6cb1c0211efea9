"""farm_query: the PostgreSQL role `farm query` switches to, allowed SELECT on farm's tables only

Revision ID: 0012
Revises: 0014 (numbered 0012 when planned; it follows the model-twins migration, merged first)
Create Date: 2026-12-01 22:10:00

Roles belong to the whole server, so the role may exist already (another farm database) and the
migrating user may not be allowed to create it: then nothing here fails, and `farm query` refuses
with the statements an administrator must run (orchestrator/query/pg_role.py).
"""
from alembic import op

revision = "0012"
down_revision = "0014"
branch_labels = None
depends_on = None

ROLE = "farm_query"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Each step in its own sub-block: a missing privilege or a concurrent creator skips that step only.
    op.execute(f"""
DO $farm$
DECLARE
    schema_name text := current_schema();
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            CREATE ROLE {ROLE} NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN
        RAISE NOTICE 'farm: role {ROLE} not created: %', SQLERRM;
    END;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', schema_name);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO {ROLE}', schema_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO {ROLE}', schema_name);
    EXCEPTION WHEN insufficient_privilege OR internal_error THEN
        RAISE NOTICE 'farm: grants to {ROLE} not made: %', SQLERRM;
    END;
    BEGIN
        IF NOT pg_has_role(session_user, '{ROLE}', 'USAGE') THEN
            EXECUTE format('GRANT {ROLE} TO %I', session_user);
        END IF;
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation OR internal_error THEN
        RAISE NOTICE 'farm: % cannot become {ROLE}: %', session_user, SQLERRM;
    END;
END
$farm$;
""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
DO $farm$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE SELECT ON TABLES FROM {ROLE}', current_schema());
        EXECUTE format('REVOKE SELECT ON ALL TABLES IN SCHEMA %I FROM {ROLE}', current_schema());
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {ROLE}', current_schema());
    END IF;
END
$farm$;
""")
