"""account.email_confirmed_at: a sign-up counts once its owner opened the link mailed to the address

Revision ID: 8c4f2a6e9b13
Revises: 5d2c8e1f4b37
Create Date: 2026-12-06 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c4f2a6e9b13"
down_revision: str | None = "5d2c8e1f4b37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account") as batch_op:
        batch_op.add_column(sa.Column("email_confirmed_at", sa.DateTime(timezone=True), nullable=True))
    # Accounts from before confirmation existed keep working: their sign-up counts as confirmed.
    op.execute("UPDATE account SET email_confirmed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("account") as batch_op:
        batch_op.drop_column("email_confirmed_at")
