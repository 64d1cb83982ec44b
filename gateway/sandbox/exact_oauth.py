"""The sandbox Exact Online's OAuth side: the authorize page and the token endpoint, with Exact's rules.

Codes are single-use and live 3 minutes; access tokens live 10 minutes; a new one is refused within 570 s of the last
("Access Token not expired"); refresh tokens are single-use and a reused one is refused with "Old refresh token
used."; a refresh token left unused for 30 days expires. Works without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

CODE_LIFETIME = 180.0
ACCESS_LIFETIME = 600
MIN_RENEWAL_AGE = 570.0
REFRESH_IDLE = 30 * 24 * 3600.0


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    created: float
    used: bool = False


@dataclass
class Grant:
    """One consent: the live refresh token, the dead ones, and when the last access token was issued."""

    id: int
    refresh_token: str
    issued_at: float
    dead_refresh_tokens: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class TokenRequest:
    at: float
    grant_type: str
    status: int
    outcome: str


class TokenService:
    """Codes, grants and access tokens of the sandbox, in memory. `requests` records every token-endpoint call."""

    def __init__(self, clock: Callable[[], float], *, client_id: str | None, client_secret: str | None) -> None:
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.codes: dict[str, _Code] = {}
        self.grants: dict[int, Grant] = {}
        self.access: dict[str, tuple[int, float]] = {}
        self.requests: list[TokenRequest] = []

    def bearer_ok(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("bearer "):
            return False
        found = self.access.get(header[7:].strip())
        return found is not None and found[1] > self.clock()

    def new_code(self, client_id: str, redirect_uri: str) -> str:
        # Real codes contain "!" (sent as %21), which the client must decode before exchanging.
        code = f"stampNL001.{secrets.token_urlsafe(8)}!IAAAA{secrets.token_urlsafe(24)}"
        self.codes[code] = _Code(client_id, redirect_uri, self.clock())
        return code

    def _issue(self, grant: Grant) -> dict[str, Any]:
        access = f"AAEAA{secrets.token_urlsafe(48)}"
        now = self.clock()
        self.access[access] = (grant.id, now + ACCESS_LIFETIME)
        grant.issued_at = now
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": str(ACCESS_LIFETIME),  # a string, as Exact sends it
            "refresh_token": grant.refresh_token,
        }

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or self.clock() - code.created > CODE_LIFETIME:
            return 400, {"error": "invalid_grant", "error_description": "The authorization code is invalid."}
        code.used = True
        if code.redirect_uri != form.get("redirect_uri") or code.client_id != form.get("client_id"):
            return 400, {"error": "invalid_grant", "error_description": "The redirect URI does not match."}
        grant = Grant(id=len(self.grants) + 1, refresh_token=_refresh_token(), issued_at=self.clock())
        self.grants[grant.id] = grant
        return 200, self._issue(grant)

    def refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        token = form.get("refresh_token", "")
        for grant in self.grants.values():
            if token in grant.dead_refresh_tokens:
                return 401, {"error": "invalid_grant", "error_description": "Old refresh token used."}
            if token != grant.refresh_token:
                continue
            idle = self.clock() - grant.issued_at
            if idle > REFRESH_IDLE:
                expired = dt.datetime.fromtimestamp(grant.issued_at + REFRESH_IDLE, tz=dt.UTC)
                message = f"The refresh token expired at {expired:%m/%d/%Y %I:%M:%S %p}."
                return 400, {"error": "invalid_request", "error_description": message}
            if idle < MIN_RENEWAL_AGE:
                return 401, {"error": "invalid_request", "error_description": "Access Token not expired"}
            grant.dead_refresh_tokens.add(grant.refresh_token)
            grant.refresh_token = _refresh_token()
            return 200, self._issue(grant)
        return 400, {"error": "invalid_grant", "error_description": "The refresh token is invalid."}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (self.client_id and form.get("client_id") != self.client_id) or (
            self.client_secret and form.get("client_secret") != self.client_secret
        ):
            return 401, {"error": "invalid_client"}
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self.exchange(form)
        if grant_type == "refresh_token":
            return self.refresh(form)
        return 400, {"error": "unsupported_grant_type"}


def _refresh_token() -> str:
    return f"Gcp7!IAAA{secrets.token_urlsafe(40)}"


def _with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode(params)}"


AUTHORIZE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Exact Online (sandbox): authorise</title></head>
<body><main>
<h1>Exact Online sandbox</h1>
<p>The application <strong>{client_id}</strong> asks for access to your administrations.</p>
<form method="post" action="/api/oauth2/auth">
<input type="hidden" name="client_id" value="{client_id}">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<input type="hidden" name="state" value="{state}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</main></body></html>
"""


def authorize_routes(tokens: TokenService) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(authorize, token) endpoints bound to one TokenService."""

    async def authorize(request: Request) -> Response:
        source = request.query_params if request.method == "GET" else await request.form()
        client_id, redirect_uri = str(source.get("client_id", "")), str(source.get("redirect_uri", ""))
        state = str(source.get("state", ""))
        if not client_id or not redirect_uri.startswith(("http://", "https://")):
            return HTMLResponse("<p>Invalid request: client_id and redirect_uri are required.</p>", status_code=400)
        if request.method == "GET":
            if source.get("response_type") != "code":
                return HTMLResponse("<p>Invalid request: response_type must be code.</p>", status_code=400)
            page = AUTHORIZE_PAGE.format(
                client_id=escape(client_id), redirect_uri=escape(redirect_uri), state=escape(state)
            )
            return HTMLResponse(page)
        if source.get("decision") != "approve":
            return RedirectResponse(_with_query(redirect_uri, {"error": "access_denied", "state": state}), 302)
        code = tokens.new_code(client_id, redirect_uri)
        return RedirectResponse(_with_query(redirect_uri, {"code": code, "state": state}), 302)

    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        status, body = tokens.token(form)
        tokens.requests.append(
            TokenRequest(tokens.clock(), form.get("grant_type", ""), status, body.get("error", "issued"))
        )
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    return authorize, token
