"""Connecting a Mijnwebwinkel shop: the service functions behind the customer's token and webhook pages.

Validate a pasted shop token with a live `GET /store`, store it encrypted, replace or revoke it; create and rotate the
webhook URL key (stored hashed, shown once) and the webhook signing secret (stored encrypted, shown once); read the
platform's order statuses (cached). Pages call these after their own ownership and CSRF checks.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clients.errors import ApiError, AuthError, TransientApiError
from gateway.clients.mijnwebwinkel import MijnwebwinkelAuthError, MijnwebwinkelClient
from gateway.clients.mijnwebwinkel_models import MwwOrderStatus, MwwStore
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.settings import Settings
from gateway.store import credentials, status_cache
from gateway.store.integrations import hash_webhook_key, update_integration

logger = logging.getLogger(__name__)

ORDER_STATUSES_TTL = timedelta(hours=6)
SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9._~+/=-]{8,200}$")

# What the token page says for each failure; `reason` codes are stable for translations.
TOKEN_ERROR_MESSAGES = {
    "empty": "Paste the shop token from your Mijnwebwinkel admin.",
    "malformed": "This does not look like a Mijnwebwinkel token: copy it again without spaces or line breaks.",
    "invalid_token": "Mijnwebwinkel does not accept this token. It may be mistyped, inactive, expired or revoked: "
    "check it under Settings > Add-ons & Modules > Integrations and paste it again.",
    "wrong_partner": "This token was made for another partner. In the Mijnwebwinkel token form, choose this gateway "
    "as the partner (not your accounting package), save, and paste the new token.",
    "no_api_access": "Your Mijnwebwinkel plan does not include API access (the API needs Mijnwebwinkel Premium or "
    "higher). Upgrade the plan, then paste the token again.",
    "forbidden": "Mijnwebwinkel refused this token. Check that it is active and made for this gateway as partner.",
    "unreachable": "Mijnwebwinkel could not be reached just now. Your token was not checked; try again in a minute.",
    "unexpected": "Mijnwebwinkel gave an unexpected answer. Try again later; if it persists, contact support.",
    "not_configured": "This gateway has no Mijnwebwinkel partner token configured; the operator must set "
    "MWW_PARTNER_TOKEN.",
}


class ShopTokenError(Exception):
    """A pasted token could not be used. `reason` is a key of TOKEN_ERROR_MESSAGES; str() is safe to show."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(TOKEN_ERROR_MESSAGES[reason])


@dataclass(frozen=True)
class ShopCheck:
    """What the live check learned about the shop: shown on success and stored on the integration."""

    name: str
    country: str
    plan: str
    prices_include_tax: bool

    @classmethod
    def from_store(cls, store: MwwStore) -> ShopCheck:
        return cls(store.name, store.region_code, store.version, store.prices_include_tax)


def normalize_token(raw: str | None) -> str:
    """The token as pasted, trimmed; raises ShopTokenError("empty"/"malformed") before any network call."""
    token = (raw or "").strip()
    if not token:
        raise ShopTokenError("empty")
    if not _TOKEN_SHAPE.match(token):
        raise ShopTokenError("malformed")
    return token


async def check_shop_token(
    *, settings: Settings, http: httpx.AsyncClient, shop_token: str, integration_id: int, redis: Redis | None = None
) -> ShopCheck:
    """Validate a token with a live `GET /store`; raise ShopTokenError with the specific reason otherwise."""
    token = normalize_token(shop_token)
    if not str(settings.mww_partner_token):
        raise ShopTokenError("not_configured")
    client = MijnwebwinkelClient(
        http,
        base_url=settings.mww_base_url,
        partner_token=str(settings.mww_partner_token),
        shop_token=token,
        shop_key=f"integration-{integration_id}",
        redis=redis,
    )
    try:
        return ShopCheck.from_store(await client.get_store())
    except MijnwebwinkelAuthError as e:
        raise ShopTokenError(e.reason) from e
    except TransientApiError as e:
        raise ShopTokenError("unreachable") from e
    except ApiError as e:
        logger.warning("shop token check for integration %s failed: %s", integration_id, e)
        raise ShopTokenError("unexpected") from e


async def connect_shop(
    engine: AsyncEngine,
    *,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    integration_id: int,
    shop_token: str,
    redis: Redis | None = None,
) -> ShopCheck:
    """Check the token live, then store it encrypted and mark the shop connected (also replaces a stored token).

    No transaction is held during the HTTP call. On failure nothing is stored and ShopTokenError says why.
    """
    token = normalize_token(shop_token)
    check = await check_shop_token(
        settings=settings, http=http, shop_token=token, integration_id=integration_id, redis=redis
    )
    async with engine.begin() as conn:
        await credentials.save_credential(
            conn, integration_id=integration_id, kind=credentials.SHOP_TOKEN, secret=token, cipher=cipher
        )
        await update_integration(
            conn,
            integration_id=integration_id,
            shop_name=check.name[:200],
            shop_country=check.country or None,
            shop_connection="connected",
            shop_connection_error=None,
            last_poll_error=None,
            next_poll_at=utcnow(),  # a (re)connected shop is polled at once, not after an earlier back-off
        )
    logger.info("shop token stored for integration %s", integration_id)
    return check


async def revoke_shop(conn: AsyncConnection, *, integration_id: int) -> bool:
    """Forget the stored token and stop polling. The poll cursor is kept, so a later reconnect misses nothing.

    The token also lives on in the shop's admin: the page should tell the owner to revoke it there too.
    """
    removed = await credentials.delete_credential(conn, integration_id=integration_id, kind=credentials.SHOP_TOKEN)
    await update_integration(
        conn, integration_id=integration_id, shop_connection="disconnected", shop_connection_error=None
    )
    return removed


async def mark_shop_refused(conn: AsyncConnection, *, integration_id: int, error: MijnwebwinkelAuthError) -> None:
    """The API refused the stored token (poller, booking job): stop polling and tell the owner what to do."""
    await update_integration(
        conn,
        integration_id=integration_id,
        shop_connection="error",
        shop_connection_error=TOKEN_ERROR_MESSAGES.get(error.reason, TOKEN_ERROR_MESSAGES["forbidden"]),
    )


def webhook_url(settings: Settings, webhook_key: str) -> str:
    return f"{settings.public_url}/webhooks/mijnwebwinkel/{webhook_key}"


async def rotate_webhook_key(conn: AsyncConnection, *, integration_id: int) -> str:
    """Create (or replace) the shop's webhook URL key. Only its hash is stored: show the returned key once."""
    key = secrets.token_urlsafe(32)
    await update_integration(conn, integration_id=integration_id, webhook_key_hash=hash_webhook_key(key))
    return key


async def remove_webhook_key(conn: AsyncConnection, *, integration_id: int) -> None:
    await update_integration(conn, integration_id=integration_id, webhook_key_hash=None)


async def rotate_signing_secret(conn: AsyncConnection, *, integration_id: int, cipher: Cipher) -> str:
    """Create (or replace) the webhook signing secret ("whsec_" + base64 of 32 random bytes, Standard Webhooks).

    Stored encrypted; show the returned value once. From now on unsigned notices for this shop are refused.
    """
    secret = SIGNING_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    await credentials.save_credential(
        conn, integration_id=integration_id, kind=credentials.WEBHOOK_SIGNING_SECRET, secret=secret, cipher=cipher
    )
    return secret


async def remove_signing_secret(conn: AsyncConnection, *, integration_id: int) -> bool:
    return await credentials.delete_credential(
        conn, integration_id=integration_id, kind=credentials.WEBHOOK_SIGNING_SECRET
    )


def signing_key(secret: str) -> bytes:
    """The HMAC key of a signing secret: the bytes behind "whsec_<base64>" (Standard Webhooks), else the text."""
    if secret.startswith(SIGNING_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SIGNING_SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


async def order_statuses(
    engine: AsyncEngine,
    *,
    settings: Settings,
    http: httpx.AsyncClient,
    integration_id: int,
    refresh: bool = False,
) -> list[MwwOrderStatus]:
    """The platform's order statuses for the settings checkboxes (`credit_order` marks credit statuses).

    Read live from `orderstatuses` (partner token only) and cached for ORDER_STATUSES_TTL; never hard-coded.
    Raises the ApiError tree when the list cannot be read and nothing fresh is cached.
    """
    if not refresh:
        async with engine.connect() as conn:
            cached = await status_cache.get_cached_order_statuses(conn, integration_id=integration_id)
        if cached is not None:
            return [MwwOrderStatus.from_api(item) for item in cached]
    client = MijnwebwinkelClient(
        http,
        base_url=settings.mww_base_url,
        partner_token=str(settings.mww_partner_token),
        shop_token="",
        shop_key=f"integration-{integration_id}",
    )
    statuses = await client.list_order_statuses()
    as_json = [{"status": s.id, "description": s.description, "credit_order": s.credit_order} for s in statuses]
    async with engine.begin() as conn:
        await status_cache.save_cached_order_statuses(
            conn, integration_id=integration_id, statuses=as_json, ttl=ORDER_STATUSES_TTL
        )
    return statuses


async def mww_client_for(
    conn: AsyncConnection,
    *,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    integration_id: int,
    redis: Redis | None = None,
) -> MijnwebwinkelClient:
    """The client for one integration with its stored (encrypted) shop token.

    Raises AuthError when no shop token is stored. Pass `redis` (the worker's pool) to make the one-request-per-shop
    gate hold across processes; without it the gate holds within this process.
    """
    stored = await credentials.get_credential(
        conn, integration_id=integration_id, kind=credentials.SHOP_TOKEN, cipher=cipher
    )
    if stored is None:
        raise AuthError("no Mijnwebwinkel shop token is stored for this shop; paste one on the connection page")
    return MijnwebwinkelClient(
        http,
        base_url=settings.mww_base_url,
        partner_token=str(settings.mww_partner_token),
        shop_token=stored.secret,
        shop_key=f"integration-{integration_id}",
        redis=redis,
    )
