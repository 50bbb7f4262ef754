"""intents settled: a carried-out intent whose run needs no more watching

The every-minute pass reads the runs of the intents carried out in the last
days to find those that died; an intent whose run completed (or whose child
moved on) is marked settled and not read again, and the read is indexed by
(status, done_at) instead of scanning every done intent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intent") as batch:
        batch.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("intent_carried", "intent", ["status", "done_at"])


def downgrade() -> None:
    op.drop_index("intent_carried", table_name="intent")
    with op.batch_alter_table("intent") as batch:
        batch.drop_column("settled_at")
