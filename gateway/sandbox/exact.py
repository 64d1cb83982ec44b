"""The sandbox Exact Online: a Starlette app that answers like the real REST API for everything the gateway uses.

OAuth (authorize page, token endpoint with Exact's renewal rules), `current/Me`, and per division the master data
and booking endpoints with OData envelopes, paging, mandatory filtering, validation of POST bodies, Exact's URL length
limit, the minutely and daily limits with Exact's headers and 429s. Sales invoices get their number when processed.
It keeps what was booked in memory: `GET /_sandbox/state` shows it. `POST /_sandbox/faults` (only when built with
faults_enabled) switches on latency, 5xx answers, hangs, 429 storms and "fail after storing" (the document is stored,
then the answer is a 500 or a hang).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.exact_bulk import BULK, bulk_page
from gateway.sandbox.exact_entities import MANDATORY_FILTER, WRITABLE
from gateway.sandbox.exact_oauth import TokenService, authorize_routes
from gateway.sandbox.exact_odata import ODataError, error_response, jsonable, next_link, query_rows
from gateway.sandbox.exact_records import DivisionState, create_record
from gateway.sandbox.exact_seed import DIVISIONS, USER_ID

# path under /api/v1/{division}/ → (entity, methods)
ENDPOINTS: dict[str, tuple[str, frozenset[str]]] = {
    "system/Divisions": ("Divisions", frozenset({"GET"})),
    "vat/VATCodes": ("VATCodes", frozenset({"GET"})),
    "financial/GLAccounts": ("GLAccounts", frozenset({"GET"})),
    "financial/Journals": ("Journals", frozenset({"GET"})),
    "logistics/Items": ("Items", frozenset({"GET", "POST"})),
    "logistics/ItemGroups": ("ItemGroups", frozenset({"GET"})),
    "crm/Accounts": ("Accounts", frozenset({"GET", "POST"})),
    "cashflow/PaymentConditions": ("PaymentConditions", frozenset({"GET"})),
    "salesentry/SalesEntries": ("SalesEntries", frozenset({"GET", "POST"})),
    "salesinvoice/SalesInvoices": ("SalesInvoices", frozenset({"GET", "POST"})),
    "salesinvoice/PrintedSalesInvoices": ("PrintedSalesInvoices", frozenset({"POST"})),
    "salesorder/SalesOrders": ("SalesOrders", frozenset({"GET", "POST"})),
}
READ_ONLY_FIELDS = frozenset(
    {
        *("EntryNumber", "Status", "Type", "AmountFC", "AmountFCExclVat", "VATAmountFC", "Created", "Modified"),
        *("Division", "InvoiceNumber", "InvoiceDate", "OrderNumber", "Code"),
    }
)
SANDBOX_CLIENT_ID = "sandbox-gateway"  # what the demo registers when EXACT_CLIENT_ID is unset
BOOKED = ("SalesEntries", "SalesInvoices", "PrintedSalesInvoices", "SalesOrders")
MAX_BODY = 10 * 1024 * 1024  # Exact's POST size limit
MAX_URL = 6000  # Exact's URL limit, counted after URL encoding; the status of its refusal is not documented


@dataclass
class Faults:
    """Switches for the next answers of division endpoints. Counters count down as they fire."""

    latency: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    timeout_next: int = 0
    hang_seconds: float = 30.0
    storm_429: int = 0
    fail_after_store: int = 0
    fail_after_store_mode: str = "500"  # "500" or "timeout"


@dataclass(frozen=True)
class CallRecord:
    at: float
    division: int
    method: str
    path: str
    status: int


class ExactSandbox:
    """The sandbox's state. Tests may hold it (`app.state.sandbox`) to inspect or steer it directly."""

    def __init__(
        self,
        *,
        minutely_limit: int,
        daily_limit: int,
        latency: float,
        clock: Callable[[], float],
        faults_enabled: bool,
        client_id: str | None,
        client_secret: str | None,
    ) -> None:
        self.minutely_limit = minutely_limit
        self.daily_limit = daily_limit
        self.clock = clock
        self.faults_enabled = faults_enabled
        self.faults = Faults(latency=latency)
        self.tokens = TokenService(clock, client_id=client_id, client_secret=client_secret)
        self.divisions = {seed.code: DivisionState.fresh(seed) for seed in DIVISIONS}
        self.current_division = DIVISIONS[0].code
        self.calls: list[CallRecord] = []
        self._minute: dict[tuple[int, int], int] = {}
        self._day: dict[tuple[int, str], int] = {}

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC)

    def rate_headers(self, division: int, *, only_minutely: bool = False) -> dict[str, str]:
        now = self.clock()
        minute, day = int(now // 60), self.now().strftime("%Y-%m-%d")
        midnight = dt.datetime.combine(self.now().date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        headers = {
            "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
            "X-RateLimit-Minutely-Remaining": str(
                max(0, self.minutely_limit - self._minute.get((division, minute), 0))
            ),
            "X-RateLimit-Minutely-Reset": str((minute + 1) * 60_000),
        }
        if not only_minutely:
            headers |= {
                "X-RateLimit-Limit": str(self.daily_limit),
                "X-RateLimit-Remaining": str(max(0, self.daily_limit - self._day.get((division, day), 0))),
                "X-RateLimit-Reset": str(int(midnight.timestamp() * 1000)),
            }
        return headers

    def take_call(self, division: int) -> Response | None:
        """Count one call against the division's clock minute and UTC day, or answer 429 like Exact."""
        now = self.clock()
        minute, day = (division, int(now // 60)), (division, self.now().strftime("%Y-%m-%d"))
        if self._day.get(day, 0) >= self.daily_limit:
            return error_response("API rate limit exceeded (daily).", 429, self.rate_headers(division))
        if self._minute.get(minute, 0) >= self.minutely_limit:
            # Out of minutely calls, Exact sends only the minutely headers.
            return error_response("API rate limit exceeded.", 429, self.rate_headers(division, only_minutely=True))
        self._minute[minute] = self._minute.get(minute, 0) + 1
        self._day[day] = self._day.get(day, 0) + 1
        return None

    async def fault_before(self, division: int) -> Response | None:
        faults = self.faults
        if faults.storm_429 > 0:
            faults.storm_429 -= 1
            return error_response("API rate limit exceeded.", 429, self.rate_headers(division, only_minutely=True))
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return error_response("Internal server error (sandbox fault).", faults.fail_status)
        if faults.timeout_next > 0:
            faults.timeout_next -= 1
            await asyncio.sleep(faults.hang_seconds)
            return error_response("Gateway timeout (sandbox fault).", 504)
        return None

    async def fault_after_store(self) -> Response | None:
        if self.faults.fail_after_store <= 0:
            return None
        self.faults.fail_after_store -= 1
        if self.faults.fail_after_store_mode == "timeout":
            await asyncio.sleep(self.faults.hang_seconds)
            return error_response("Gateway timeout (sandbox fault).", 504)
        return error_response("Internal server error (sandbox fault).", 500)

    def rows(self, division: int, entity: str) -> list[dict[str, Any]]:
        if entity == "Divisions":
            return [
                {
                    "Code": s.seed.code,
                    "Description": s.seed.description,
                    "CustomerName": s.seed.description,
                    "Country": s.seed.country,
                    "VATNumber": s.seed.vat_number,
                    "Current": s.seed.code == self.current_division,
                    "Status": 1,
                }
                for s in self.divisions.values()
            ]
        return self.divisions[division].rows[entity]

    def state_json(self) -> dict[str, Any]:
        """What was booked and created, per division, with lines in full (the admin view)."""
        divisions: dict[str, dict[str, Any]] = {}
        for code, state in self.divisions.items():
            divisions[str(code)] = {name: [_plain(r) for r in state.rows[name]] for name in BOOKED}
            divisions[str(code)]["Accounts"] = [_plain(r) for r in state.rows["Accounts"]]
            divisions[str(code)]["Items"] = [_plain(r) for r in state.rows["Items"]]
            divisions[str(code)]["direct_invoices"] = state.direct_invoices
        return {
            "divisions": divisions,
            "token_requests": [asdict(r) for r in self.tokens.requests],
            "calls": [asdict(c) for c in self.calls],
            "faults": asdict(self.faults),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return jsonable(value)


def _fields(sandbox: ExactSandbox, division: int, entity: str, rows: list[dict[str, Any]]) -> set[str]:
    if entity in WRITABLE:  # what a POST may carry plus what the server adds; no need to scan every record
        spec = WRITABLE[entity]
        return set(spec.accepted | READ_ONLY_FIELDS | {spec.key})
    return set().union(*(r.keys() for r in rows)) if rows else set()


def _get(sandbox: ExactSandbox, request: Request, division: int, entity: str) -> Response:
    rows = sandbox.rows(division, entity)
    params = dict(request.query_params)
    page, next_offset = query_rows(
        rows,
        params,
        fields=_fields(sandbox, division, entity, rows),
        type_name=f"Exact.Web.Api.Models.{entity}",
        mandatory_filter=MANDATORY_FILTER.get(entity),
    )
    body: dict[str, Any] = {"results": page}
    if next_offset is not None:
        body["__next"] = next_link(str(request.url.replace(query="")), params, next_offset)
    return JSONResponse({"d": body})


async def _post(sandbox: ExactSandbox, request: Request, division: int, entity: str) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ODataError("The request is larger than 10 MB.", 413)
    try:
        payload = json.loads(raw, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ODataError(
            "Error processing request stream. The request should be a valid top-level resource object."
        ) from e
    spec = WRITABLE[entity]
    record = create_record(sandbox.divisions[division], spec, payload, sandbox.now())
    failed = await sandbox.fault_after_store()
    if failed is not None:
        return failed
    uri = f"{request.url.replace(query='')}(guid'{record.get(spec.key)}')"
    body = {"__metadata": {"uri": uri, "type": spec.type_name}, **{k: jsonable(v) for k, v in record.items()}}
    return JSONResponse({"d": body}, status_code=201)


def _sandbox(request: Request) -> ExactSandbox:
    sandbox: ExactSandbox = request.app.state.sandbox
    return sandbox


def _unauthorised() -> Response:
    return error_response("Unauthorized", 401, {"WWW-Authenticate": "Bearer"})


async def me(request: Request) -> Response:
    """current/Me: no division in the URL, so not counted against any budget."""
    sandbox = _sandbox(request)
    if not sandbox.tokens.bearer_ok(request.headers.get("Authorization")):
        return _unauthorised()
    user = {
        "UserID": USER_ID,
        "CurrentDivision": sandbox.current_division,
        "FullName": "Sandra Sandbox",
        "UserName": "sandra@sandbox.test",
        "Email": "sandra@sandbox.test",
        "LanguageCode": "nl-NL",
    }
    try:
        page, _ = query_rows([user], dict(request.query_params), fields=set(user), type_name="Me")
    except ODataError as e:
        return error_response(str(e), e.status)
    return JSONResponse({"d": {"results": page}})


async def division_api(request: Request) -> Response:
    """Every /api/v1/{division}/... call: token, division, faults, budget, then the endpoint; recorded."""
    sandbox = _sandbox(request)
    division = int(request.path_params["division"])
    path = request.url.path.split(f"/api/v1/{division}/", 1)[-1]  # "service/Entity" or "bulk/Service/Entity"
    if sandbox.faults.latency:
        await asyncio.sleep(sandbox.faults.latency)
    arrived = sandbox.clock()  # calls are counted when they arrive, as Exact's windows do
    if not sandbox.tokens.bearer_ok(request.headers.get("Authorization")):
        return _unauthorised()
    if division not in sandbox.divisions:
        return error_response("Forbidden - WrongDivision", 403)
    # Faults first: an injected 429 or 5xx is not counted against the budget, as Exact does not count 429s.
    response = _url_too_long(request) or await sandbox.fault_before(division) or sandbox.take_call(division)
    if response is None:
        response = await _dispatch(sandbox, request, division, path)
        response.headers.update(sandbox.rate_headers(division))
    sandbox.calls.append(CallRecord(arrived, division, request.method, path, response.status_code))
    return response


def _url_too_long(request: Request) -> Response | None:
    if len(str(request.url)) <= MAX_URL:
        return None
    return error_response(f"The request URL is longer than {MAX_URL} characters.", 414)


async def state(request: Request) -> Response:
    return JSONResponse(_sandbox(request).state_json())


async def faults(request: Request) -> Response:
    sandbox = _sandbox(request)
    if not sandbox.faults_enabled:
        return error_response("Not found", 404)
    return await _set_faults(sandbox, request)


def create_exact_sandbox(
    *,
    faults_enabled: bool = False,
    minutely_limit: int = 60,
    daily_limit: int = 5000,
    latency: float = 0.0,
    clock: Callable[[], float] = time.time,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Starlette:
    """The sandbox app. `clock` (epoch seconds) lets tests and the benchmark move time; client credentials, when
    given, are checked at the token endpoint."""
    sandbox = ExactSandbox(
        minutely_limit=minutely_limit,
        daily_limit=daily_limit,
        latency=latency,
        clock=clock,
        faults_enabled=faults_enabled,
        client_id=client_id,
        client_secret=client_secret,
    )
    authorize, token = authorize_routes(sandbox.tokens)
    routes = [
        Route("/api/oauth2/auth", authorize, methods=["GET", "POST"]),
        Route("/api/oauth2/token", token, methods=["POST"]),
        Route("/api/v1/current/Me", me),
        Route("/api/v1/{division:int}/{service}/{entity}", division_api, methods=["GET", "POST"]),
        Route("/api/v1/{division:int}/bulk/{service}/{entity}", division_api, methods=["GET", "POST"]),
        Route("/_sandbox/state", state),
        Route("/_sandbox/faults", faults, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


async def _dispatch(sandbox: ExactSandbox, request: Request, division: int, path: str) -> Response:
    if path in BULK:
        return _bulk(sandbox, request, division, path)
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        return error_response(f"Resource not found for the segment '{path}'.", 404)
    entity, methods = endpoint
    if request.method not in methods:
        return error_response(f"The method '{request.method}' is not allowed on '{path}'.", 405)
    try:
        if request.method == "GET":
            return _get(sandbox, request, division, entity)
        return await _post(sandbox, request, division, entity)
    except ODataError as e:
        return error_response(str(e), e.status)


def _bulk(sandbox: ExactSandbox, request: Request, division: int, path: str) -> Response:
    """Bulk endpoints are read-only; 1,000 rows a page (gateway/sandbox/exact_bulk.py)."""
    if request.method != "GET":
        return error_response(f"The method '{request.method}' is not allowed on '{path}'.", 405)
    params = dict(request.query_params)
    try:
        page, next_offset = bulk_page(sandbox.divisions[division], path, params)
    except ODataError as e:
        return error_response(str(e), e.status)
    body: dict[str, Any] = {"results": page}
    if next_offset is not None:
        body["__next"] = next_link(str(request.url.replace(query="")), params, next_offset)
    return JSONResponse({"d": body})


async def _set_faults(sandbox: ExactSandbox, request: Request) -> Response:
    """Body: any Faults field, plus {"reset": true} and {"division_flags": {"123456": {"direct_invoices": true}}}."""
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        return error_response("invalid JSON", 400)
    if not isinstance(body, dict):
        return error_response("expected an object", 400)
    if body.pop("reset", False):
        sandbox.faults = Faults()
    known = {f.name: f.type for f in fields(Faults)}
    for name, value in body.pop("division_flags", {}).items():
        if int(name) in sandbox.divisions:
            sandbox.divisions[int(name)].direct_invoices = bool(value.get("direct_invoices"))
    for name, value in body.items():
        if name not in known:
            return error_response(f"unknown fault {name!r}", 400)
        setattr(sandbox.faults, name, type(getattr(sandbox.faults, name))(value))
    return JSONResponse(asdict(sandbox.faults))
