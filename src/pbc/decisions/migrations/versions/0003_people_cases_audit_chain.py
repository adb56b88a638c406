"""People and roles, business cases, and the hash-chained audit log.

The audit rows already written (budget versions, agreements, freezes, exports) join the
chain: they are hashed in id order, as :func:`pbc.decisions.audit.append` would have
chained them, and the head is set to the last of them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from pbc.decisions.audit import GENESIS, row_digest

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AUDIT = sa.table(
    "audit_log", sa.column("id", sa.Integer), sa.column("at", sa.DateTime),
    sa.column("actor", sa.String), sa.column("actor_role", sa.String),
    sa.column("action", sa.String), sa.column("entity", sa.String),
    sa.column("entity_id", sa.String), sa.column("detail", sa.Text),
    sa.column("before_state", sa.Text), sa.column("after_state", sa.Text),
    sa.column("prev_hash", sa.String), sa.column("row_hash", sa.String))
HEAD = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("last_id", sa.Integer),
                sa.column("last_hash", sa.String), sa.column("rows", sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor_role", type_=sa.String(80), existing_type=sa.String(30),
                           existing_nullable=False)
        batch.add_column(sa.Column("before_state", sa.Text))
        batch.add_column(sa.Column("after_state", sa.Text))
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("row_hash", sa.String(64)))
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
    )
    bind = op.get_bind()
    prev, last_id, n = GENESIS, 0, 0
    for row in bind.execute(sa.select(AUDIT).order_by(AUDIT.c.id)).mappings().all():
        digest = row_digest(id=row["id"], at=row["at"], actor=row["actor"],
                            actor_role=row["actor_role"], action=row["action"],
                            entity=row["entity"], entity_id=row["entity_id"],
                            detail=row["detail"], before_state=None, after_state=None,
                            prev_hash=prev)
        bind.execute(AUDIT.update().where(AUDIT.c.id == row["id"]).values(
            prev_hash=prev, row_hash=digest))
        prev, last_id, n = digest, row["id"], n + 1
    bind.execute(HEAD.insert().values(id=1, last_id=last_id, last_hash=prev, rows=n))

    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "user_roles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False,
                  index=True),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("organisation", sa.String(20), nullable=False),
        sa.UniqueConstraint("user_id", "role", "organisation"),
    )
    op.create_table(
        "business_cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("proposer_kind", sa.String(10), nullable=False),
        sa.Column("proposer_code", sa.String(20), nullable=False, index=True),
        sa.Column("commissioner_code", sa.String(20), nullable=False, index=True),
        sa.Column("category", sa.String(60), nullable=False),
        sa.Column("touches_social_care", sa.Boolean, nullable=False),
        sa.Column("local_authority_code", sa.String(20), index=True),
        sa.Column("provider_is_proposer", sa.Boolean, nullable=False),
        sa.Column("case_file", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("savings", sa.Text, nullable=False),
        sa.Column("consultation_response", sa.Text),
        sa.Column("consulted_by", sa.String(100)),
        sa.Column("consulted_at", sa.DateTime),
        sa.Column("decision_note", sa.Text),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("business_cases")
    op.drop_table("user_roles")
    op.drop_table("users")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("after_state")
        batch.drop_column("before_state")
        batch.alter_column("actor_role", type_=sa.String(30), existing_type=sa.String(80),
                           existing_nullable=False)
