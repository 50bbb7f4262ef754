"""board: the outbox's rows of one event by time (the worklist's replaced runs)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("notification_event_created", "notification", ["event", "created_at"])


def downgrade() -> None:
    op.drop_index("notification_event_created", table_name="notification")
