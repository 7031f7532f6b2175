"""ledger and virtual keys

Revision ID: 0001
Revises:
Create Date: 2026-11-21 18:12:50.057985
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_entries',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('team', sa.String(length=128), nullable=True),
    sa.Column('project', sa.String(length=128), nullable=True),
    sa.Column('endpoint', sa.String(length=32), nullable=False),
    sa.Column('requested_model', sa.String(length=256), nullable=True),
    sa.Column('deployment', sa.String(length=256), nullable=True),
    sa.Column('tier', sa.String(length=16), nullable=True),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('policy', sa.String(length=128), nullable=True),
    sa.Column('route_reason', sa.String(length=512), nullable=True),
    sa.Column('complexity_score', sa.Float(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('error_class', sa.String(length=64), nullable=True),
    sa.Column('stream', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('input_uncached_tokens', sa.Integer(), nullable=False),
    sa.Column('input_cache_read_tokens', sa.Integer(), nullable=False),
    sa.Column('input_cache_write_tokens', sa.Integer(), nullable=False),
    sa.Column('input_cache_write_1h_tokens', sa.Integer(), nullable=False),
    sa.Column('output_tokens', sa.Integer(), nullable=False),
    sa.Column('reasoning_tokens', sa.Integer(), nullable=False),
    sa.Column('usage_estimated', sa.Boolean(), nullable=False),
    sa.Column('cost_micros', sa.BigInteger(), nullable=False),
    sa.Column('baseline_cost_micros', sa.BigInteger(), nullable=False),
    sa.Column('baseline_deployment', sa.String(length=256), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('ttft_ms', sa.Float(), nullable=True),
    sa.Column('overhead_ms', sa.Float(), nullable=True),
    sa.Column('cache_outcome', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_ledger_key_created_at', ['key_id', 'created_at'], unique=False)
        batch_op.create_index('ix_ledger_team_created_at', ['team', 'created_at'], unique=False)

    op.create_table('virtual_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('team', sa.String(length=128), nullable=False),
    sa.Column('project', sa.String(length=128), nullable=True),
    sa.Column('budget_daily_micros', sa.BigInteger(), nullable=True),
    sa.Column('budget_monthly_micros', sa.BigInteger(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )


def downgrade() -> None:
    op.drop_table('virtual_keys')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_team_created_at')
        batch_op.drop_index('ix_ledger_key_created_at')
        batch_op.drop_index('ix_ledger_created_at')

    op.drop_table('ledger_entries')
