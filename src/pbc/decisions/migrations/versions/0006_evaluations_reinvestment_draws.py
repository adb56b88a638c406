"""Evaluations of business cases, and draws of approved cases on freed resources.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("business_cases.id"), nullable=False,
                  index=True),
        sa.Column("started", sa.String(7), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("evaluated_by", sa.String(100), nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "reinvestment_draws",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("business_cases.id"), nullable=False,
                  index=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("code", sa.String(20), nullable=False, index=True),
        sa.Column("financial_year", sa.String(7), nullable=False),
        sa.Column("plan", sa.String(250), nullable=False),
        sa.Column("amount_pence", sa.BigInteger, nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=False),
        sa.Column("approved_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reinvestment_draws")
    op.drop_table("case_evaluations")
