"""digest members: the outbox's rows filed under one digest, by the digest's id

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("notification_digest", "notification", ["digest_id"])


def downgrade() -> None:
    op.drop_index("notification_digest", table_name="notification")
