"""POST /webhooks/mijnwebwinkel/{webhook_key}: a change notice for one order, fed into the notice pipeline.

The notice `{"order_number": "1001", "status": 2}` is a hint only; the booking job re-reads the order from the API.
The URL key names the shop (stored hashed). When the shop has a signing secret, the Standard-Webhooks headers
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`) must
verify within 5 minutes. Rejected requests are never stored. Format: docs/mijnwebwinkel.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import metrics, pipeline
from gateway.logs import bind
from gateway.shop_connection import signing_key
from gateway.store import credentials
from gateway.store.integrations import Integration, get_integration_by_webhook_key, hash_webhook_key
from gateway.untrusted_json import JsonRejected, parse_json

SIGNATURE_TOLERANCE_SECONDS = 5 * 60
LOOKUP_TTL_SECONDS = 5.0
UNKNOWN_TTL_SECONDS = 5.0  # an unknown key is remembered as unknown this long: a flood of it costs one query
MAX_STATUS = 2**31 - 1  # the status column is a 32-bit integer
LOOKUP_CACHE_SIZE = 10_000
_KEY = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_DIGITS = re.compile(r"^[0-9]{1,25}$")
_ORDER_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,40}$")
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # no ':' or ' ', so it never collides with poller dedupe keys


class NoticeRejected(Exception):
    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        self.status, self.error, self.field = status, error, field


async def mijnwebwinkel_webhook(request: Request) -> Response:
    state = request.app.state
    try:
        body = await _bounded_body(request, state.settings.webhook_max_body_bytes)
        _require_json_content_type(request)
        integration, secret = await _integration_and_secret(request, request.path_params["webhook_key"])
        if secret is not None:
            _verify_signature(request, body, secret)
        order_number, status = _parse_notice(body, state.settings.webhook_max_body_bytes)
    except NoticeRejected as e:
        metrics.WEBHOOK_NOTICES.labels("unknown_key" if e.status == 404 else "invalid").inc()
        return JSONResponse({"error": e.error, **({"field": e.field} if e.field else {})}, status_code=e.status)
    bind(integration_id=integration.id, order_number=order_number)  # the request's log lines, up to the access line
    webhook_id = request.headers.get("webhook-id", "")
    outcome = await pipeline.accept_notice(
        state.engine,
        state.arq,
        integration=integration,
        order_number=order_number,
        status_id=status,
        source="webhook",
        dedupe_key=webhook_id if _WEBHOOK_ID.match(webhook_id) else f"{order_number}:{status}",
    )
    metrics.WEBHOOK_NOTICES.labels(outcome.result if integration.is_active else "inactive").inc()
    return JSONResponse({"accepted": True, "result": outcome.result}, status_code=202)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes (the middleware also enforces it; never trust one layer)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise NoticeRejected(413, "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _require_json_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise NoticeRejected(415, "content type must be application/json")


async def _integration_and_secret(request: Request, key: str) -> tuple[Integration, str | None]:
    """The shop behind a URL key and its signing secret, remembered for a few seconds per process (so a rotated or
    removed key stops working within LOOKUP_TTL_SECONDS). Unknown keys are remembered as unknown for
    UNKNOWN_TTL_SECONDS, apart from the known ones, so a flood of unknown keys never evicts a shop."""
    if not _KEY.match(key):
        raise NoticeRejected(404, "unknown webhook URL")
    cache: dict[str, tuple[float, Integration, str | None]] = _process_cache(request, "webhook_shops")
    unknown: dict[str, float] = _process_cache(request, "webhook_unknown")
    key_hash, now = hash_webhook_key(key), time.monotonic()
    hit = cache.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    if unknown.get(key_hash, 0.0) > now:
        raise NoticeRejected(404, "unknown webhook URL")
    async with request.app.state.engine.connect() as conn:
        integration = await get_integration_by_webhook_key(conn, webhook_key=key)
        if integration is None:
            if len(unknown) >= LOOKUP_CACHE_SIZE:
                unknown.clear()
            unknown[key_hash] = now + UNKNOWN_TTL_SECONDS
            raise NoticeRejected(404, "unknown webhook URL")
        stored = await credentials.get_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.WEBHOOK_SIGNING_SECRET,
            cipher=request.app.state.cipher,
        )
    if len(cache) >= LOOKUP_CACHE_SIZE:
        cache.clear()
    secret = None if stored is None else stored.secret
    cache[key_hash] = (now + LOOKUP_TTL_SECONDS, integration, secret)
    return integration, secret


def _process_cache(request: Request, name: str) -> dict[str, Any]:
    found: dict[str, Any] | None = getattr(request.app.state, name, None)
    if found is None:
        found = {}
        setattr(request.app.state, name, found)
    return found


def _verify_signature(request: Request, body: bytes, secret: str, *, now: float | None = None) -> None:
    msg_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signatures = request.headers.get("webhook-signature", "")
    if not (msg_id and timestamp and signatures):
        raise NoticeRejected(401, "signature headers missing (webhook-id, webhook-timestamp, webhook-signature)")
    if not _DIGITS.match(timestamp) or abs((now or time.time()) - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        raise NoticeRejected(401, "webhook-timestamp is missing or outside the 5-minute tolerance")
    expected = sign(secret, msg_id, timestamp, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise NoticeRejected(401, "signature does not match")


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The v1 signature value (base64, without the "v1," prefix) of one notice, as senders compute it."""
    digest = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _parse_notice(body: bytes, max_bytes: int) -> tuple[str, int]:
    try:
        data: Any = parse_json(body, max_bytes=max_bytes)
    except JsonRejected as e:
        raise NoticeRejected(400, e.reason) from None
    if not isinstance(data, dict):
        raise NoticeRejected(400, "body must be a JSON object")
    number = data.get("order_number")
    if isinstance(number, bool) or not isinstance(number, str | int) or not _ORDER_NUMBER.match(str(number)):
        raise NoticeRejected(422, "order_number must be the shop's order number", "order_number")
    status = data.get("status")
    # ASCII digits only: str.isdigit() also admits "²", which int() refuses.
    if isinstance(status, str) and _DIGITS.match(status.strip()):
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= MAX_STATUS:
        raise NoticeRejected(422, "status must be the order status id (an integer)", "status")
    return str(number), status


routes = [
    Route(
        "/webhooks/mijnwebwinkel/{webhook_key}",
        mijnwebwinkel_webhook,
        name="mijnwebwinkel_webhook",
        methods=["POST"],
    )
]
