"""reasons as text: a hold's and a plan version's whole reason, a message's route

A hold's reason joins the rationales of the decisions that hold the item (a
B-cell depletion with its CD19 count, its lab limit and its sources, say); a
re-plan's reason can list what the new results change ("results change the
plan: vaccination: now ..."). They were strings of at most 1,000 and 200
characters: PostgreSQL refused longer ones, and the re-plan failed with them
(SQLite does not check lengths). A message's route names the referring service
("referrers:<service>", the service up to 200 characters): it was at most 120, and
a referral from a service with a long name was refused on PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# (table, column, its old length, nullable)
COLUMNS = (
    ("planitem", "hold_reason", 1000, True),
    ("careplan", "reason", 200, False),
    ("notification", "route", 120, False),
)


def upgrade() -> None:
    for table_name, column, length, nullable in COLUMNS:
        with op.batch_alter_table(table_name) as table:
            table.alter_column(
                column,
                existing_type=sqlmodel.sql.sqltypes.AutoString(length=length),
                type_=sa.Text(),
                existing_nullable=nullable,
            )


def downgrade() -> None:
    """Back to the bounded strings: on PostgreSQL a longer reason is cut to the old length
    (it would be refused otherwise); SQLite keeps it whole (it checks no length)."""
    for table_name, column, length, nullable in COLUMNS:
        with op.batch_alter_table(table_name) as table:
            table.alter_column(
                column,
                existing_type=sa.Text(),
                type_=sqlmodel.sql.sqltypes.AutoString(length=length),
                existing_nullable=nullable,
                postgresql_using=f"left({column}, {length})",
            )
