"""order_sync.error_params: the figures a failure names, so pages render its kind in the reader's language

Revision ID: 7b1e4c2a9d10
Revises: 7d1f3c2b9a40
Create Date: 2026-12-06 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b1e4c2a9d10"
down_revision: str | None = "7d1f3c2b9a40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_sync") as batch_op:
        batch_op.add_column(sa.Column("error_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_sync") as batch_op:
        batch_op.drop_column("error_params")
