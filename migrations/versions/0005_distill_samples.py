"""distillation samples: captured, redacted prompt/response pairs for fine-tuning

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "distill_samples",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=True),
        sa.Column("policy", sa.String(length=128), nullable=True),
        sa.Column("deployment", sa.String(length=256), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("completion", sa.JSON(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=True),
        sa.Column("redacted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_distill_samples_team_created_at", "distill_samples", ["team", "created_at"])
    op.create_index("ix_distill_samples_prompt_hash", "distill_samples", ["prompt_hash"])


def downgrade() -> None:
    op.drop_table("distill_samples")
