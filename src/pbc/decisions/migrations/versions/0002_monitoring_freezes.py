"""Frozen monthly monitoring positions (pbc monitor freeze).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_freezes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commissioner_code", sa.String(12), nullable=False),
        sa.Column("financial_year", sa.String(7), nullable=False, index=True),
        sa.Column("month", sa.Integer, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("budget_version", sa.Integer, nullable=False),
        sa.Column("budget_status", sa.String(12), nullable=False),
        sa.Column("forecast_method", sa.String(40), nullable=False),
        sa.Column("warehouse_version", sa.Integer, nullable=False),
        sa.Column("rows_sha256", sa.String(64), nullable=False),
        sa.Column("frozen_by", sa.String(100), nullable=False),
        sa.Column("frozen_role", sa.String(60), nullable=False),
        sa.Column("frozen_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("commissioner_code", "financial_year", "month"),
    )
    op.create_table(
        "frozen_position_rows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("freeze_id", sa.Integer, sa.ForeignKey("monitoring_freezes.id"),
                  nullable=False, index=True),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("service_line", sa.String(40), nullable=False),
        sa.Column("annual_budget", sa.BigInteger, nullable=False),
        sa.Column("budget_to_date", sa.BigInteger, nullable=False),
        sa.Column("spend_to_date", sa.BigInteger, nullable=False),
        sa.Column("variance", sa.BigInteger, nullable=False),
        sa.Column("forecast_outturn", sa.BigInteger),
        sa.Column("forecast_lower", sa.BigInteger),
        sa.Column("forecast_upper", sa.BigInteger),
        sa.Column("forecast_note", sa.Text),
        sa.UniqueConstraint("freeze_id", "level", "code", "service_line"),
    )


def downgrade() -> None:
    op.drop_table("frozen_position_rows")
    op.drop_table("monitoring_freezes")
