"""Custody of the Exact Online tokens: the one module that reads, renews and stores them.

Exact's rules (docs/exact.md): an access token lives 10 minutes and may be renewed only 570 s after it was issued;
refresh tokens are single-use, so two processes renewing with the same one lock the customer out. Hence renewal
happens only when < 30 s remain, under a Redis lock per integration that every process shares, after re-reading the
stored pair, and the new pair is committed before the new access token is used. A dead grant marks the connection
"reconnect_needed" and raises AuthError, which stops the integration's jobs until the customer connects again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import LockError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import metrics
from gateway.clients.errors import AuthError, PermanentApiError, TransientApiError
from gateway.clients.exact import ExactClient, ExactDivision, ExactMe
from gateway.clients.exact_responses import VENDOR
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_oauth import REFRESH_TOKEN_IDLE_DAYS, ExactTokens, exchange_code, host_for, refresh_tokens
from gateway.lookups import DIVISIONS, invalidate_lookups, store_lookup
from gateway.ratelimit import RateGovernor
from gateway.settings import Settings
from gateway.store.credentials import EXACT_OAUTH, Credential, delete_credential, get_credential, save_credential
from gateway.store.integrations import (
    Integration,
    get_integration,
    get_integration_or_raise,
    list_integrations,
    update_integration,
)

logger = logging.getLogger(__name__)

RENEW_BEFORE = dt.timedelta(seconds=30)  # renew when less than this remains
MIN_AGE = dt.timedelta(seconds=570)  # Exact refuses a new access token earlier than this after the last one
LOCK_TIMEOUT = 60.0  # the lock outlives a token request (exact_oauth.TOKEN_TIMEOUT) by far
LOCK_WAIT = 45.0
RECONNECT_NEEDED = "reconnect_needed"


def lock_name(integration_id: int) -> str:
    return f"exact:token-lock:{integration_id}"


async def store_tokens(conn: AsyncConnection, *, integration_id: int, tokens: ExactTokens, cipher: Cipher) -> None:
    """Persist a pair, encrypted. The refresh token's idle life restarts with every renewal."""
    secret = json.dumps({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token})
    await save_credential(
        conn,
        integration_id=integration_id,
        kind=EXACT_OAUTH,
        secret=secret,
        cipher=cipher,
        access_issued_at=tokens.issued_at,
        access_expires_at=tokens.expires_at,
        refresh_expires_at=tokens.issued_at + dt.timedelta(days=REFRESH_TOKEN_IDLE_DAYS),
    )


def _tokens_of(credential: Credential) -> ExactTokens:
    data = json.loads(credential.secret)
    issued = credential.access_issued_at or credential.updated_at
    expires = credential.access_expires_at or issued
    return ExactTokens(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        expires_in=max(0, int((expires - issued).total_seconds())),
        issued_at=issued,
    )


async def mark_reconnect_needed(engine: AsyncEngine, *, integration_id: int, reason: str) -> None:
    async with engine.begin() as conn:
        await update_integration(
            conn, integration_id=integration_id, exact_connection=RECONNECT_NEEDED, exact_connection_error=reason
        )


class ExactAuth(httpx.Auth):
    """Adds the bearer token to each request; renews it safely when due; replays once after a 401 if a newer
    token exists or renewal is allowed."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        cipher: Cipher,
        http: httpx.AsyncClient,
        redis: Redis,
        settings: Settings,
        integration_id: int,
        host: str,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self.http = http
        self.redis = redis
        self.settings = settings
        self.integration_id = integration_id
        self.host = host
        self.now = now
        self.renewals = 0  # token requests this instance made (tests, metrics)
        self._tokens: ExactTokens | None = None
        self._local_lock = asyncio.Lock()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ExactAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = await self.access_tokens()
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        newer = await self.access_tokens(rejected=tokens)
        if newer.access_token != tokens.access_token:
            await response.aread()
            request.headers["Authorization"] = f"Bearer {newer.access_token}"
            yield request

    def _fresh(self, tokens: ExactTokens | None) -> bool:
        return tokens is not None and tokens.expires_at - self.now() > RENEW_BEFORE

    async def access_tokens(self, *, rejected: ExactTokens | None = None, force: bool = False) -> ExactTokens:
        """A usable pair: the cached one while fresh, else the stored one, else a renewal under the shared lock.

        `rejected`: Exact answered 401 to this access token, so it is not used again. `force`: renew even when fresh
        (the keep-alive cron), still respecting the 570-second minimum age.
        """
        async with self._local_lock:
            cached = self._tokens
            if cached is not None and not force and self._fresh(cached) and not _same(cached, rejected):
                return cached
            stored = await self._read()
            if not force and self._fresh(stored) and not _same(stored, rejected):
                self._tokens = stored
                return stored
            self._tokens = await self._renew_locked(rejected=rejected or (stored if force else None))
            return self._tokens

    async def _read(self) -> ExactTokens:
        async with self.engine.connect() as conn:
            credential = await get_credential(
                conn, integration_id=self.integration_id, kind=EXACT_OAUTH, cipher=self.cipher
            )
        if credential is None:
            raise AuthError(f"{VENDOR} is not connected: connect it on the settings page", vendor=VENDOR)
        return _tokens_of(credential)

    async def _renew_locked(self, *, rejected: ExactTokens | None) -> ExactTokens:
        lock = self.redis.lock(lock_name(self.integration_id), timeout=LOCK_TIMEOUT, blocking_timeout=LOCK_WAIT)
        try:
            acquired = await lock.acquire()
        except LockError as e:  # pragma: no cover - redis-py raises only on misuse
            raise TransientApiError(f"{VENDOR} token renewal lock failed", vendor=VENDOR) from e
        if not acquired:
            raise TransientApiError(f"{VENDOR} token renewal is busy elsewhere; trying again later", vendor=VENDOR)
        try:
            # Re-read after taking the lock: another process may have renewed while this one waited.
            stored = await self._read()
            if self._fresh(stored) and not _same(stored, rejected):
                return stored
            return await self._renew(stored)
        finally:
            try:
                await lock.release()
            except LockError:
                logger.warning("exact token lock for integration %s expired before release", self.integration_id)

    async def _renew(self, stored: ExactTokens) -> ExactTokens:
        age = self.now() - stored.issued_at
        if age < MIN_AGE:
            if stored.expires_at > self.now():
                return stored  # too young to renew and still valid: Exact would refuse the renewal anyway
            wait = (MIN_AGE - age).total_seconds()
            raise TransientApiError(f"{VENDOR} token cannot be renewed yet", vendor=VENDOR, retry_after=wait)
        self.renewals += 1
        try:
            tokens = await refresh_tokens(
                self.http, self.settings, host=self.host, refresh_token=stored.refresh_token, now=self.now()
            )
        except AuthError as e:
            metrics.TOKEN_RENEWALS.labels("failed").inc()
            reason = f"{e} Connect Exact Online again."
            await mark_reconnect_needed(self.engine, integration_id=self.integration_id, reason=reason)
            logger.warning("exact authorisation of integration %s is gone; reconnect needed", self.integration_id)
            raise AuthError(reason, status=e.status, vendor=VENDOR) from e
        # Persist before use: the old refresh token is dead now, and losing the new one would need a new consent.
        async with self.engine.begin() as conn:
            await store_tokens(conn, integration_id=self.integration_id, tokens=tokens, cipher=self.cipher)
        metrics.TOKEN_RENEWALS.labels("ok").inc()
        logger.info("exact token renewed for integration %s", self.integration_id)
        return tokens


def _same(a: ExactTokens | None, b: ExactTokens | None) -> bool:
    return a is not None and b is not None and a.access_token == b.access_token


def exact_auth_for(
    *,
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    redis: Redis,
    integration: Integration,
) -> ExactAuth:
    if integration.exact_connection != "connected" or not integration.exact_country:
        reason = integration.exact_connection_error or "connect it on the settings page"
        raise AuthError(f"{VENDOR} is not connected: {reason}", vendor=VENDOR)
    return ExactAuth(
        engine=engine,
        cipher=cipher,
        http=http,
        redis=redis,
        settings=settings,
        integration_id=integration.id,
        host=host_for(settings, integration.exact_country),
    )


async def exact_client_for(
    *,
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    redis: Redis,
    integration: Integration,
) -> ExactClient:
    """An ExactClient for the integration's division with token custody and the rate governor wired in.

    Raises AuthError without any HTTP call when the connection is missing or needs a new consent.
    """
    auth = exact_auth_for(
        engine=engine, settings=settings, cipher=cipher, http=http, redis=redis, integration=integration
    )
    if not integration.exact_division:
        raise AuthError(f"{VENDOR} is connected but no administration is chosen", vendor=VENDOR)
    # Read (or renew) the token now, not inside the first request: between the governor's slot and the request's
    # arrival at Exact there must be no database wait, or a call granted at :59 could land in Exact's next minute.
    await auth.access_tokens()
    return ExactClient(
        http,
        host=auth.host,
        division=integration.exact_division,
        auth=auth,
        governor=RateGovernor.from_settings(redis, settings),
    )


async def refresh_idle_tokens(
    *,
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    redis: Redis,
    older_than: dt.timedelta = dt.timedelta(days=20),
) -> int:
    """Keep-alive: renew pairs not renewed for `older_than`, before Exact's 30-day idle expiry. Returns how many."""
    async with engine.connect() as conn:
        candidates = [i for i in await list_integrations(conn) if i.exact_connection == "connected"]
    renewed = 0
    for integration in candidates:
        async with engine.connect() as conn:
            credential = await get_credential(conn, integration_id=integration.id, kind=EXACT_OAUTH, cipher=cipher)
            current = await get_integration(conn, integration_id=integration.id)
        issued = (credential.access_issued_at or credential.updated_at) if credential else None
        if current is None or issued is None or utcnow() - issued < older_than:
            continue
        auth = exact_auth_for(
            engine=engine, settings=settings, cipher=cipher, http=http, redis=redis, integration=current
        )
        try:
            await auth.access_tokens(force=True)
            renewed += 1
        except (AuthError, TransientApiError) as e:
            logger.warning("keep-alive renewal for integration %s failed: %s", integration.id, e)
    return renewed


async def complete_connection(
    *,
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    http: httpx.AsyncClient,
    redis: Redis,
    integration: Integration,
    country: str,
    code: str,
) -> Integration:
    """The callback's work: exchange the code, store the pair encrypted (before any use), read the user and the
    administrations, and mark the integration connected. Raises the error tree; the integration is left
    "disconnected" with a reason when the administrations cannot be read."""
    tokens = await exchange_code(http, settings, country=country, code=code)
    async with engine.begin() as conn:
        await store_tokens(conn, integration_id=integration.id, tokens=tokens, cipher=cipher)
        await update_integration(
            conn, integration_id=integration.id, exact_country=country, exact_connection="disconnected"
        )
    host = host_for(settings, country)
    auth = ExactAuth(
        engine=engine,
        cipher=cipher,
        http=http,
        redis=redis,
        settings=settings,
        integration_id=integration.id,
        host=host,
    )
    try:
        me = await ExactClient(http, host=host, division=0, auth=auth).me()
        governor = RateGovernor.from_settings(redis, settings)
        divisions = await ExactClient(
            http, host=host, division=me.current_division, auth=auth, governor=governor
        ).list_divisions()
    except (AuthError, TransientApiError, PermanentApiError) as e:
        async with engine.begin() as conn:
            await update_integration(conn, integration_id=integration.id, exact_connection_error=str(e))
        raise
    return await _mark_connected(engine, integration, country=country, me=me, divisions=divisions)


async def _mark_connected(
    engine: AsyncEngine, integration: Integration, *, country: str, me: ExactMe, divisions: list[ExactDivision]
) -> Integration:
    """Keep the administration chosen before if the user still sees it, else take Exact's current one."""
    codes = {d.code: d for d in divisions}
    kept = integration.exact_division if integration.exact_country == country else None
    division = codes.get(kept if kept in codes else me.current_division)
    async with engine.begin() as conn:
        await update_integration(
            conn,
            integration_id=integration.id,
            exact_division=division.code if division else me.current_division,
            exact_division_name=division.description if division else None,
            exact_user_name=me.full_name or me.user_name,
            exact_connection="connected",
            exact_connection_error=None,
        )
        await invalidate_lookups(conn, integration_id=integration.id)
        await store_lookup(conn, integration_id=integration.id, kind=DIVISIONS, records=divisions)
        found = await get_integration_or_raise(conn, integration_id=integration.id)
    logger.info("exact connected for integration %s (division %s)", integration.id, found.exact_division)
    return found


async def forget_connection(conn: AsyncConnection, *, integration_id: int) -> None:
    """Disconnect: drop the stored tokens and cached look-ups; the integration keeps its country for a reconnect."""
    await delete_credential(conn, integration_id=integration_id, kind=EXACT_OAUTH)
    await invalidate_lookups(conn, integration_id=integration_id)
    await update_integration(
        conn,
        integration_id=integration_id,
        exact_connection="disconnected",
        exact_connection_error=None,
        exact_user_name=None,
    )


async def refresh_idle_exact_tokens(ctx: dict[str, Any]) -> str:
    """Daily cron: renew every Exact connection whose tokens were last renewed more than 20 days ago."""
    renewed = await refresh_idle_tokens(
        engine=ctx["engine"], settings=ctx["settings"], cipher=ctx["cipher"], http=ctx["http"], redis=ctx["redis"]
    )
    return f"renewed {renewed} idle Exact connection(s)"
