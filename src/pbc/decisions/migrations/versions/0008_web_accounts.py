"""Web accounts: password hashes, server-side sessions, login attempts, API tokens
(pbc.decisions.accounts).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_credentials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_name", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("set_by", sa.String(100), nullable=False),
        sa.Column("set_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("user_name", sa.String(100), nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_name", sa.String(100), nullable=False, index=True),
        sa.Column("client", sa.String(64), nullable=False, index=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("succeeded", sa.Boolean, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("user_name", sa.String(100), nullable=False, index=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime),
        sa.Column("revoked_by", sa.String(100)),
        sa.Column("revoked_at", sa.DateTime),
    )


def downgrade() -> None:
    for table in ("api_tokens", "login_attempts", "web_sessions", "user_credentials"):
        op.drop_table(table)
