"""Exact Online's OData v2 wire format: string literals, padded account codes, Edm.DateTime values and JSON bodies.

Pure functions, no HTTP; the client (clients/exact.py) and the booking calls (clients/exact_documents.py) use them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway.clients.errors import PermanentApiError
from gateway.clients.exact_responses import VENDOR

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def odata_quote(value: str) -> str:
    """An OData v2 string literal: single quotes around, a quote inside doubled ("o'brien" → "'o''brien'")."""
    return "'" + str(value).replace("'", "''") + "'"


def parse_odata_date(value: str | None) -> dt.datetime | None:
    """Exact returns Edm.DateTime as "/Date(1700000000000)/" (epoch milliseconds, UTC); None stays None."""
    if value is None or value == "":
        return None
    match = _DATE.match(str(value))
    if match is None:
        raise PermanentApiError(f"{VENDOR} sent an unreadable date {str(value)[:40]!r}", vendor=VENDOR)
    return dt.datetime.fromtimestamp(int(match.group(1)) / 1000, tz=dt.UTC)


def pad_account_code(code: str) -> str:
    """Accounts.Code is an 18-character, right-aligned, space-padded string; filters must include the spaces."""
    return f"{code.strip():>18}"


def encode_json(value: Any) -> str:
    """JSON text for a request body: Decimal as an exact JSON number, dates as ISO 8601, UUIDs as strings."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} to Exact Online")
        return format(value, "f")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot send {value} to Exact Online")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return json.dumps(value.isoformat(timespec="seconds"))
    if isinstance(value, dt.date):
        # A bare date is sent as midnight without an offset, so the booking date cannot shift by a day.
        return json.dumps(f"{value.isoformat()}T00:00:00")
    if isinstance(value, uuid.UUID):
        return json.dumps(str(value))
    return json.dumps(value)
