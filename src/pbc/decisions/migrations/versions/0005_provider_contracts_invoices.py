"""Provider contracts, checked invoices and the activity they billed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_contracts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("provider_code", sa.String(20), nullable=False, index=True),
        sa.Column("financial_year", sa.String(7), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("contract_file", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("plan_pence", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("commissioner_code", "provider_code", "financial_year"),
    )
    op.create_table(
        "invoice_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("provider_code", sa.String(20), nullable=False, index=True),
        sa.Column("file_name", sa.String(300), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("invoiced_pence", sa.BigInteger, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("checked_by", sa.String(100), nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "billed_activity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("check_id", sa.Integer, sa.ForeignKey("invoice_checks.id"),
                  nullable=False, index=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False),
        sa.Column("provider_code", sa.String(20), nullable=False),
        sa.Column("dataset", sa.String(10), nullable=False),
        sa.Column("activity_id", sa.String(60), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.UniqueConstraint("commissioner_code", "provider_code", "dataset", "activity_id"),
    )


def downgrade() -> None:
    op.drop_table("billed_activity")
    op.drop_table("invoice_checks")
    op.drop_table("provider_contracts")
