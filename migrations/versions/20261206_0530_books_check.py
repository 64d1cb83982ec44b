"""books_check: one row per integration and month with the latest books check's report

Revision ID: 5d2c8e1f4b37
Revises: 3a9e5b7c1d20
Create Date: 2026-12-06 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2c8e1f4b37"
down_revision: str | None = "3a9e5b7c1d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "books_check",
        sa.Column("id", Id, nullable=False),
        sa.Column("integration_id", Id, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("reviewed", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("exact_calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("shop_calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integration.id"],
            name=op.f("fk_books_check_integration_id_integration"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_books_check")),
        sa.UniqueConstraint("integration_id", "month", name=op.f("uq_books_check_integration_id_month")),
    )


def downgrade() -> None:
    op.drop_table("books_check")
