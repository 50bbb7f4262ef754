"""holds: an item held while a re-plan waits, why, and for which proposed version

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("planitem") as table:
        table.add_column(sa.Column("hold_reason", TEXT(length=1000), nullable=True))
        table.add_column(sa.Column("held_for", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("planitem") as table:
        table.drop_column("held_for")
        table.drop_column("hold_reason")
