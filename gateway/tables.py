"""Every table of the gateway as SQLAlchemy Core `Table`s; no queries (those live in `gateway/store/`).

Tenant rows carry a non-null `integration_id`. Times are timezone-aware UTC. Secrets live only in `credential`,
encrypted (see crypto.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY, so big ids fall back to Integer there.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _tenant_fk() -> Column[int]:
    return Column("integration_id", Id, ForeignKey("integration.id", ondelete="CASCADE"), nullable=False)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time on both databases.

    SQLite stores times as text without their offset, so a bound value is turned into UTC first (a local midnight
    would otherwise compare as if it were UTC) and a value read back gets its UTC zone again. Naive values are UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


def _ts(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


account = Table(
    "account",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("locale", String(8), nullable=False, server_default="nl"),
    Column("is_operator", Boolean, nullable=False, server_default="0"),
    _ts("created_at", nullable=False),
    _ts("password_changed_at"),
    _ts("last_login_at"),
    _ts("email_confirmed_at"),  # null until the sign-up link mailed to the address is opened; no login before
)

integration = Table(
    "integration",
    metadata,
    Column("id", Id, primary_key=True),
    Column("account_id", Id, ForeignKey("account.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False, server_default=""),
    # setup -> active <-> paused; "trial_ended" pauses until the operator activates it.
    Column("state", String(20), nullable=False, server_default="setup"),
    Column("service_level", String(10), nullable=False, server_default="pro"),
    Column("wizard_step", String(30), nullable=False, server_default="mijnwebwinkel"),
    # Mijnwebwinkel side
    Column("shop_name", String(200)),
    Column("shop_country", String(2)),
    Column("shop_connection", String(20), nullable=False, server_default="disconnected"),
    Column("shop_connection_error", Text),
    Column("webhook_key_hash", String(64), unique=True),
    Column("poll_cursor", String(19)),  # "yyyy-mm-dd hh:mm:ss", the shop's zone-less time
    _ts("last_polled_at"),
    _ts("next_poll_at"),
    Column("last_poll_error", Text),
    # Exact side
    Column("exact_country", String(2)),
    Column("exact_division", Integer),
    Column("exact_division_name", String(200)),
    Column("exact_user_name", String(200)),
    Column("exact_connection", String(20), nullable=False, server_default="disconnected"),
    Column("exact_connection_error", Text),
    # Configuration of every booking step, validated by booking_settings.IntegrationSettings.
    Column("settings", JSON, nullable=False, default=dict),
    _ts("trial_ends_at"),
    _ts("activated_at"),
    _ts("last_notified_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # The poll scheduler's due-shop query (store.integrations.claim_due_integrations).
    Index("ix_integration_due", "state", "shop_connection", "next_poll_at"),
)

credential = Table(
    "credential",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("kind", String(30), nullable=False),  # "shop_token" | "exact_oauth" | "webhook_signing_secret"
    Column("secret", Text, nullable=False),  # MultiFernet token of the secret (JSON for exact_oauth)
    _ts("access_expires_at"),
    _ts("access_issued_at"),
    _ts("refresh_expires_at"),
    Column("version", Integer, nullable=False, server_default="1"),  # bumped on each write: optimistic checks
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("integration_id", "kind"),
)

vat_mapping = Table(
    "vat_mapping",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    # "NL-21", "NL-9", "NL-0", "EU-B2B", "EXPORT", "OSS-DE-19": see booking.py vat_category()
    Column("category", String(20), nullable=False),
    Column("vat_code", String(10)),
    Column("gl_account", String(40)),  # Exact GLAccount code (revenue)
    Column("seen_in_orders", Boolean, nullable=False, server_default="0"),
    _ts("updated_at", nullable=False),
    UniqueConstraint("integration_id", "category"),
)

order_sync = Table(
    "order_sync",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("order_number", String(40), nullable=False),
    # pending -> queued -> booking -> booked | retrying | failed | needs_attention | needs_review; skipped; ignored
    Column("state", String(20), nullable=False),
    Column("status_id", Integer),
    Column("customer_name", String(200)),
    Column("customer_email", String(254)),
    Column("order_total", String(20)),
    Column("currency", String(3)),
    Column("order_date", Date),
    Column("is_credit", Boolean, nullable=False, server_default="0"),
    Column("initial_export", Boolean, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("generation", Integer, nullable=False, server_default="0"),  # bumped by operator retries (job id suffix)
    Column("error_kind", String(30)),
    Column("last_error", Text),  # English, for logs, the operator and support mail
    Column("error_params", JSON),  # the figures `last_error` names; pages render the kind (booking_reasons.py)
    Column("reason", Text),
    Column("document_type", String(20)),
    Column("exact_document_id", String(40)),
    Column("exact_document_number", String(40)),
    Column("claimed_by", String(80)),
    _ts("claimed_until"),
    _ts("enqueued_at"),
    _ts("next_attempt_at"),
    _ts("booked_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("integration_id", "order_number"),
    Index("ix_order_sync_state_updated", "state", "updated_at"),
    Index("ix_order_sync_integration_created", "integration_id", "created_at"),
    Index("ix_order_sync_integration_state", "integration_id", "state"),  # history page: counts by state
)

order_event = Table(
    "order_event",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("order_number", String(40), nullable=False),
    Column("status_id", Integer),
    Column("source", String(20), nullable=False),  # webhook | poller | initial_export | operator
    Column("dedupe_key", String(120), nullable=False),
    Column("result", String(20), nullable=False),  # queued | skipped | already_booked
    Column("reason", Text),
    Column("order_sync_id", Id, ForeignKey("order_sync.id", ondelete="SET NULL")),
    _ts("received_at", nullable=False),
    UniqueConstraint("integration_id", "dedupe_key"),
    Index("ix_order_event_integration_order", "integration_id", "order_number"),
    Index("ix_order_event_received", "received_at"),  # retention
)

sync_attempt = Table(
    "sync_attempt",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("order_sync_id", Id, ForeignKey("order_sync.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("job_id", String(120)),
    # booked | adopted | skipped | transient | deferred (waited for the rate budget) | permanent | running
    Column("outcome", String(20), nullable=False),
    Column("document_type", String(20)),
    Column("request_summary", JSON),
    Column("response_summary", Text),
    Column("error_message", Text),
    Column("exact_calls", Integer, nullable=False, server_default="0"),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    Index("ix_sync_attempt_started", "started_at"),  # retention
)

exact_link = Table(
    "exact_link",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("kind", String(20), nullable=False),  # account | item | collective_account
    Column("key", String(254), nullable=False),  # e-mail for accounts, SKU for items
    Column("exact_id", String(40), nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("integration_id", "kind", "key"),
)

lookup_cache = Table(
    "lookup_cache",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("kind", String(40), nullable=False),  # divisions | vat_codes | gl_accounts | journals | order_statuses ...
    Column("value", JSON, nullable=False),
    _ts("expires_at", nullable=False),
    UniqueConstraint("integration_id", "kind"),
)

initial_export = Table(
    "initial_export",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("start_date", Date, nullable=False),
    Column("state", String(20), nullable=False),  # running | done | cancelled | failed
    Column("total", Integer),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("next_offset", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    _ts("created_at", nullable=False),
    _ts("finished_at"),
    Index("ix_initial_export_integration", "integration_id", "state"),
)

outbox_mail = Table(
    "outbox_mail",
    metadata,
    Column("id", Id, primary_key=True),
    Column("account_id", Id, ForeignKey("account.id", ondelete="CASCADE")),
    Column("to_address", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("sent", Boolean, nullable=False, server_default="0"),
    _ts("created_at", nullable=False),
)

# One row per logged-in browser. The cookie carries a random token; this table holds only its SHA-256, so a copy of
# the database logs nobody in. Logging out, a password change, deleting the account or an operator ends sessions by
# deleting rows, and a copied cookie stops working at its next request.
login_session = Table(
    "login_session",
    metadata,
    Column("id", Id, primary_key=True),
    Column("account_id", Id, ForeignKey("account.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    _ts("created_at", nullable=False),
)

# The books check: one row per integration and month, the latest run's report (books_check/findings.py Report as
# JSON), the findings the owner marked reviewed (their keys) and what the run cost in calls.
books_check = Table(
    "books_check",
    metadata,
    Column("id", Id, primary_key=True),
    _tenant_fk(),
    Column("month", String(7), nullable=False),  # "2026-11", on the Dutch calendar
    Column("state", String(20), nullable=False),  # running | done | failed
    Column("report", JSON),
    Column("reviewed", JSON),  # list of finding keys
    Column("error", Text),
    Column("exact_calls", Integer, nullable=False, server_default="0"),
    Column("shop_calls", Integer, nullable=False, server_default="0"),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    UniqueConstraint("integration_id", "month"),
)

TENANT_TABLES = (
    credential,
    vat_mapping,
    order_sync,
    order_event,
    sync_attempt,
    exact_link,
    lookup_cache,
    initial_export,
    books_check,
)
