"""The dev mail outbox page: e-mails kept in `outbox_mail` when no SMTP server is configured.

Served only while the sandbox is on (never in production, which refuses SANDBOX=true); 404 otherwise.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.pages import render
from gateway.store.outbox import list_mail


async def sandbox_outbox(request: Request) -> Response:
    settings = request.app.state.settings
    if not settings.sandbox_enabled or settings.is_production:
        raise HTTPException(status_code=404)
    async with request.app.state.engine.connect() as conn:
        mails = await list_mail(conn, limit=50)
    return render(request, "sandbox/outbox.html", {"mails": mails})


routes = [Route("/sandbox/outbox", sandbox_outbox, name="sandbox_outbox")]
