"""Budget versions, budget lines and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("financial_year", sa.String(7), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("policy_sha256", sa.String(64)),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("agreed_by", sa.String(100)),
        sa.Column("agreed_at", sa.DateTime),
        sa.UniqueConstraint("financial_year", "version"),
    )
    op.create_table(
        "budget_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("budget_versions.id"), nullable=False,
                  index=True),
        sa.Column("practice_code", sa.String(12), nullable=False),
        sa.Column("service_line", sa.String(40), nullable=False),
        sa.Column("budget_pence", sa.BigInteger, nullable=False),
        sa.Column("fair_share_pence", sa.BigInteger),
        sa.Column("historic_pence", sa.BigInteger),
        sa.UniqueConstraint("version_id", "practice_code", "service_line"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(30), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("entity", sa.String(60), nullable=False),
        sa.Column("entity_id", sa.String(60), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("budget_lines")
    op.drop_table("budget_versions")
