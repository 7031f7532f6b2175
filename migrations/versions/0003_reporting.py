"""reporting: hourly ledger rollup kept current by triggers, policy/deployment report indexes

Revision ID: 0003
Revises: 0002

The rollup table is defined in gateway/ledger/rollups.py. On SQLite, a later migration that rebuilds
ledger_entries in batch mode drops its triggers: such a migration must re-create them with
`gateway.ledger.rollups.trigger_ddl("sqlite")`.
"""

import sqlalchemy as sa
from alembic import op

from gateway.ledger import rollups

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "ledger_rollup_hourly",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.String(length=256), nullable=False) for name in rollups.KEYS),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in rollups.SUMS),
        sa.Column("latency_count", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in rollups.LATENCY_COLUMNS),
        sa.PrimaryKeyConstraint("hour", *rollups.KEYS, name="pk_ledger_rollup_hourly"),
    )
    op.execute(rollups.backfill_sql(dialect))
    for statement in rollups.trigger_ddl(dialect):
        op.execute(statement)


def downgrade() -> None:
    for statement in rollups.drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("ledger_rollup_hourly")
