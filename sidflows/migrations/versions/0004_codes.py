"""codes: the diagnosis and each drug as their documents coded them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("patient") as table:
        table.add_column(sa.Column("diagnosis_code", TEXT(length=32), nullable=True))
        table.add_column(sa.Column("diagnosis_system", TEXT(length=220), nullable=True))
    with op.batch_alter_table("treatment") as table:
        table.add_column(sa.Column("code", TEXT(length=32), nullable=True))
        table.add_column(sa.Column("system", TEXT(length=220), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("treatment") as table:
        table.drop_column("system")
        table.drop_column("code")
    with op.batch_alter_table("patient") as table:
        table.drop_column("diagnosis_system")
        table.drop_column("diagnosis_code")
