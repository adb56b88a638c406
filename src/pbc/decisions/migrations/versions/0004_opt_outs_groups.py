"""Opt-outs, group agreements and group memberships.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder_kind", sa.String(10), nullable=False),
        sa.Column("holder_code", sa.String(20), nullable=False, index=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("service_line", sa.String(40), nullable=False),
        sa.Column("financial_year", sa.String(7), nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("proposed_by", sa.String(100), nullable=False),
        sa.Column("proposed_at", sa.DateTime, nullable=False),
        sa.Column("confirmed_by", sa.String(100)),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("withdrawn_by", sa.String(100)),
        sa.Column("withdrawn_at", sa.DateTime),
        sa.Column("withdrawal_reason", sa.Text),
    )
    op.create_table(
        "group_agreements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_code", sa.String(20), nullable=False, index=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("review_on", sa.Date, nullable=False),
        sa.Column("signatories", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "group_memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("practice_code", sa.String(20), nullable=False, index=True),
        sa.Column("group_code", sa.String(20), nullable=False, index=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("joined_by", sa.String(100), nullable=False),
        sa.Column("joined_at", sa.DateTime, nullable=False),
        sa.Column("left_by", sa.String(100)),
        sa.Column("left_at", sa.DateTime),
        sa.UniqueConstraint("practice_code", "valid_from"),
    )


def downgrade() -> None:
    op.drop_table("group_memberships")
    op.drop_table("group_agreements")
    op.drop_table("opt_outs")
