"""poll and retention indexes: the due-shop query, history counts by state, and retention's time scans

Revision ID: 7d1f3c2b9a40
Revises: 559c019afe9c
Create Date: 2026-12-06 04:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7d1f3c2b9a40"
down_revision: str | None = "559c019afe9c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_integration_due", "integration", ["state", "shop_connection", "next_poll_at"])
    op.create_index("ix_order_sync_integration_state", "order_sync", ["integration_id", "state"])
    op.create_index("ix_order_event_received", "order_event", ["received_at"])
    op.create_index("ix_sync_attempt_started", "sync_attempt", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_attempt_started", table_name="sync_attempt")
    op.drop_index("ix_order_event_received", table_name="order_event")
    op.drop_index("ix_order_sync_integration_state", table_name="order_sync")
    op.drop_index("ix_integration_due", table_name="integration")
