"""CSRF protection for every POST form: a per-session token in the signed session, echoed in a hidden field.

Routes call `await verify_csrf(request)` first; templates render `{{ csrf_input() }}` (context processor below).
"""

from __future__ import annotations

import secrets

from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

SESSION_KEY = "csrf"
FIELD = "csrf_token"
# No page uploads files; the longest form (the VAT mapping) has well under a hundred fields. The body size itself is
# bounded by BodySizeLimitMiddleware.
MAX_FORM_FIELDS = 500


def csrf_token(request: Request) -> str:
    token = request.session.get(SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return str(token)


def renew_csrf_token(request: Request) -> None:
    request.session[SESSION_KEY] = secrets.token_urlsafe(32)


async def verify_csrf(request: Request) -> FormData:
    """Parse the form and check its token against the session's; 403 when missing or wrong."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    sent = form.get(FIELD)
    expected = request.session.get(SESSION_KEY)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, str(expected)):
        raise HTTPException(
            status_code=403,
            detail="The form has expired or was not sent from this site. Reload the page and try again.",
        )
    return form


def csrf_context(request: Request) -> dict[str, object]:
    """Jinja context processor: `csrf_input()` renders the hidden field."""

    def csrf_input() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(csrf_token(request)))

    return {"csrf_input": csrf_input}
