"""learning loop: ledger cost classes, feedback, shadow quality grades

Revision ID: 0004
Revises: 0003

`ledger_entries.cost_class` separates clients' requests ('request') from the quality sampler's own
calls ('shadow', 'judge'); `parent_request_id` links those to the request they measured. The rollup
triggers are re-created so that only 'request' rows are rolled up (measurement is reported on its
own, never mixed into a request's savings).
"""

import sqlalchemy as sa
from alembic import op

from gateway.ledger import rollups

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in rollups.drop_trigger_ddl(dialect):
        op.execute(statement)
    # Plain ALTER TABLE ADD COLUMN (no batch rebuild on SQLite): existing rows become 'request'.
    op.add_column(
        "ledger_entries",
        sa.Column("cost_class", sa.String(length=16), nullable=False, server_default="request"),
    )
    op.add_column("ledger_entries", sa.Column("parent_request_id", sa.String(length=64), nullable=True))
    op.create_index("ix_ledger_cost_class_created_at", "ledger_entries", ["cost_class", "created_at"])
    for statement in rollups.trigger_ddl(dialect, requests_only=True):
        op.execute(statement)

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=True),
        sa.Column("submitted_by", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("thumbs", sa.String(length=8), nullable=True),
        sa.Column("comment", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_index("ix_feedback_team_created_at", "feedback", ["team", "created_at"])

    op.create_table(
        "shadow_grades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=True),
        sa.Column("project", sa.String(length=128), nullable=True),
        sa.Column("policy", sa.String(length=128), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("deployment", sa.String(length=256), nullable=True),
        sa.Column("reference_deployment", sa.String(length=256), nullable=False),
        sa.Column("complexity_score", sa.Float(), nullable=True),
        sa.Column("task_cluster", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("served_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("reference_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_grades_request_id", "shadow_grades", ["request_id"])
    op.create_index("ix_shadow_grades_team_created_at", "shadow_grades", ["team", "created_at"])


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_table("shadow_grades")
    op.drop_table("feedback")
    for statement in rollups.drop_trigger_ddl(dialect):
        op.execute(statement)
    op.drop_index("ix_ledger_cost_class_created_at", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("parent_request_id")
        batch.drop_column("cost_class")
    for statement in rollups.trigger_ddl(dialect):
        op.execute(statement)
    # Shadow and judge rows were outside the rollup; now they are plain rows: rebuild it.
    op.execute("DELETE FROM ledger_rollup_hourly")
    op.execute(rollups.backfill_sql(dialect))
