"""The register of Section 75 pooled budget agreements (pbc.decisions.pooled).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pooled_agreements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("reference", sa.String(40), nullable=False, unique=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("host_code", sa.String(20), nullable=False),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("local_authority_code", sa.String(20), nullable=False, index=True),
        sa.Column("group_code", sa.String(20)),
        sa.Column("agreement_file", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pooled_agreements")
