"""The Exact Online OAuth 2.0 authorization-code flow without the routes: authorize URL, signed state, token requests.

`state` is signed with SECRET_KEY (itsdangerous), expires after 10 minutes, and carries a nonce that the session
also holds; the callback pops the nonce, so a state works only in the browser session that started it. The server
keeps each state's nonce in Redis too (keyed by an HMAC, bound to the account and the integration, expiring with the
state) and the callback takes it with GETDEL: a state works once even when an old copy of the cookie is replayed.
Tokens never appear in an exception, a log line or a page (docs/exact.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis.asyncio import Redis

from gateway.clients.errors import AuthError, PermanentApiError, RateLimitedError, TransientApiError
from gateway.clients.exact_responses import VENDOR, RateLimitHeaders, error_message
from gateway.clock import utcnow
from gateway.i18n import N_, Message
from gateway.settings import EXACT_COUNTRIES, Settings

STATE_MAX_AGE = 600
STATE_SALT = "exact-oauth-state"
SESSION_NONCE = "exact_oauth_nonce"
CALLBACK_PATH = "/connect/exact/callback"
TOKEN_PATH = "/api/oauth2/token"  # noqa: S105 - a URL path
AUTHORIZE_PATH = "/api/oauth2/auth"
TOKEN_TIMEOUT = 15.0  # well under the renewal lock's lifetime (exact_auth.LOCK_TIMEOUT)
REFRESH_TOKEN_IDLE_DAYS = 30
# Exact's answers that mean the stored authorisation is gone for good and only a new consent helps.
_DEAD_GRANT = ("invalid_grant", "old refresh token", "refresh token expired", "unauthorized_client")


class StateError(Exception):
    """The `state` of a callback is missing, forged, expired, replayed or from another session."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.text)
        self.message = message


@dataclass(frozen=True)
class OAuthState:
    integration_id: int
    country: str
    nonce: str


@dataclass(frozen=True)
class ExactTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    issued_at: dt.datetime

    @property
    def expires_at(self) -> dt.datetime:
        return self.issued_at + dt.timedelta(seconds=self.expires_in)

    def __repr__(self) -> str:  # never print a token
        return f"ExactTokens(issued_at={self.issued_at.isoformat()}, expires_in={self.expires_in})"


def redirect_uri(settings: Settings) -> str:
    """Fixed: Exact requires an exact match with the URI registered for the app."""
    return f"{settings.public_url}{CALLBACK_PATH}"


def host_for(settings: Settings, country: str) -> str:
    if country not in EXACT_COUNTRIES:
        raise ValueError(f"unknown Exact Online country {country!r}")
    return settings.exact_hosts[country].rstrip("/")


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(str(settings.secret_key), salt=STATE_SALT)


def _state_key(settings: Settings, nonce: str) -> str:
    digest = hmac.new(str(settings.secret_key).encode(), f"oauth-state:{nonce}".encode(), hashlib.sha256)
    return f"exact:oauth:state:{digest.hexdigest()[:32]}"


async def new_state(
    settings: Settings, session: dict[str, Any], redis: Redis, *, account_id: int, integration_id: int, country: str
) -> str:
    """Sign a fresh state, remember its nonce in the session (replacing any earlier one) and on the server."""
    nonce = secrets.token_urlsafe(16)
    session[SESSION_NONCE] = nonce
    await redis.set(_state_key(settings, nonce), f"{account_id}:{integration_id}", ex=STATE_MAX_AGE)
    return str(_serializer(settings).dumps({"i": integration_id, "c": country, "n": nonce}))


async def check_state(
    settings: Settings, session: dict[str, Any], redis: Redis, state: str | None, *, account_id: int | None
) -> OAuthState:
    """Verify signature, age, session binding and single use on the server (for this account and integration).
    The session's nonce and the server's record are consumed whatever the outcome."""
    checked = _check_signed_state(settings, session, state)
    used = await redis.getdel(_state_key(settings, checked.nonce))
    owner = used.decode() if isinstance(used, bytes) else used
    if owner is None or owner != f"{account_id}:{checked.integration_id}":
        raise StateError(N_("This connection attempt was already used or started in another browser session."))
    return checked


def _check_signed_state(settings: Settings, session: dict[str, Any], state: str | None) -> OAuthState:
    expected = session.pop(SESSION_NONCE, None)
    if not state:
        raise StateError(N_("The answer from Exact Online carried no state."))
    try:
        data = _serializer(settings).loads(state, max_age=STATE_MAX_AGE)
    except SignatureExpired as e:
        raise StateError(N_("The connection attempt took longer than 10 minutes.")) from e
    except BadSignature as e:
        raise StateError(N_("The answer from Exact Online was not for this gateway.")) from e
    if not isinstance(data, dict) or data.get("c") not in EXACT_COUNTRIES or not isinstance(data.get("i"), int):
        raise StateError(N_("The answer from Exact Online was not for this gateway."))
    if not expected or not secrets.compare_digest(str(data.get("n", "")), str(expected)):
        raise StateError(N_("This connection attempt was already used or started in another browser session."))
    return OAuthState(integration_id=data["i"], country=data["c"], nonce=str(data["n"]))


def authorize_url(settings: Settings, *, country: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": settings.exact_client_id,
            "redirect_uri": redirect_uri(settings),
            "response_type": "code",
            "state": state,
        }
    )
    return f"{host_for(settings, country)}{AUTHORIZE_PATH}?{query}"


async def exchange_code(http: httpx.AsyncClient, settings: Settings, *, country: str, code: str) -> ExactTokens:
    """Trade a one-time authorization code (valid 3 minutes) for the first token pair."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri(settings)}
    return await request_tokens(http, settings, host=host_for(settings, country), form=form)


async def refresh_tokens(
    http: httpx.AsyncClient, settings: Settings, *, host: str, refresh_token: str, now: dt.datetime | None = None
) -> ExactTokens:
    """Renew the pair. Exact refresh tokens are single-use: the answer's refresh token replaces the old one."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await request_tokens(http, settings, host=host, form=form, now=now)


async def request_tokens(
    http: httpx.AsyncClient, settings: Settings, *, host: str, form: Mapping[str, str], now: dt.datetime | None = None
) -> ExactTokens:
    """POST the token endpoint (form-encoded, not JSON) and parse the pair, or raise from the error tree:
    AuthError when only a new consent helps, TransientApiError when trying later may work."""
    data = {**form, "client_id": settings.exact_client_id, "client_secret": str(settings.exact_client_secret)}
    issued_at = now or utcnow()
    try:
        response = await http.post(f"{host.rstrip('/')}{TOKEN_PATH}", data=data, timeout=TOKEN_TIMEOUT)
    except httpx.TimeoutException as e:
        raise TransientApiError(f"{VENDOR} token service did not answer in time", vendor=VENDOR) from e
    except httpx.TransportError as e:
        raise TransientApiError(f"{VENDOR} token service could not be reached ({type(e).__name__})") from e
    if response.is_success:
        return _parse_tokens(response, issued_at)
    raise token_error(response)


def _parse_tokens(response: httpx.Response, issued_at: dt.datetime) -> ExactTokens:
    try:
        body = response.json()
        access, refresh = str(body["access_token"]), str(body["refresh_token"])
        expires_in = int(str(body.get("expires_in", "600")))  # Exact sends the number as a string: "600"
    except (ValueError, KeyError, TypeError) as e:
        raise PermanentApiError(f"{VENDOR} token answer was incomplete", vendor=VENDOR) from e
    if not access or not refresh or expires_in <= 0:
        raise PermanentApiError(f"{VENDOR} token answer was incomplete", vendor=VENDOR)
    return ExactTokens(access_token=access, refresh_token=refresh, expires_in=expires_in, issued_at=issued_at)


def token_error(response: httpx.Response) -> Exception:
    status = response.status_code
    text = error_message(response) or response.reason_phrase
    message = f"{VENDOR} refused the authorisation: {text} (HTTP {status})"
    if status == 429:
        reset_at = RateLimitHeaders.parse(response.headers).reset_after_429(utcnow())
        return RateLimitedError(f"{VENDOR} token service is rate limited", reset_at=reset_at, vendor=VENDOR)
    if status >= 500:
        return TransientApiError(f"{VENDOR} token service failed (HTTP {status})", status=status, vendor=VENDOR)
    if "not expired" in text.lower():
        # The 570-second rule: another process renewed recently. Not fatal; the stored pair is newer than ours.
        return TransientApiError(message, status=status, vendor=VENDOR, retry_after=30.0)
    if is_dead_grant(response):
        return AuthError(message, status=status, vendor=VENDOR)
    return PermanentApiError(message, status=status, vendor=VENDOR)


def is_dead_grant(response: httpx.Response) -> bool:
    """invalid_grant / "Old refresh token used." / "The refresh token expired": only a new consent helps."""
    text = f"{error_message(response)} {response.text[:300]}".lower()
    return response.status_code in (400, 401) and any(marker in text for marker in _DEAD_GRANT)
