"""ExactClient: the Exact Online REST API (OData v2) for one division, with typed errors and typed look-ups.

No SQL, no arq, no retry loops: the job decides what to do with an error (see clients/errors.py). Tokens come from an
injected `httpx.Auth` (gateway/exact_auth.py) and the per-division call budget from an injected RateGovernor
(gateway/ratelimit.py). The wire format is in clients/exact_odata.py, the error envelope and rate-limit headers in
clients/exact_responses.py; booking documents are built on `get_all`/`post` in clients/exact_documents.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from gateway import metrics
from gateway.clients.errors import (
    AuthError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    ValidationError,
)
from gateway.clients.exact_models import (
    ACCOUNT_FIELDS,
    DIVISION_FIELDS,
    GL_FIELDS,
    ITEM_FIELDS,
    ITEM_GROUP_FIELDS,
    JOURNAL_FIELDS,
    ME_FIELDS,
    PAYMENT_CONDITION_FIELDS,
    VAT_FIELDS,
    ExactAccount,
    ExactDivision,
    ExactGLAccount,
    ExactItem,
    ExactItemGroup,
    ExactJournal,
    ExactMe,
    ExactPaymentCondition,
    ExactVatCode,
)
from gateway.clients.exact_odata import encode_json, odata_quote, pad_account_code, parse_odata_date
from gateway.clients.exact_responses import VENDOR, error_for
from gateway.clock import utcnow

if TYPE_CHECKING:
    from gateway.ratelimit import RateGovernor

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAX_PAGES = 200  # safety stop when following d.__next (60 rows a page → 12,000 rows)
REVENUE_GL_TYPE = 110
SALES_JOURNAL_TYPE = 20
JSON_HEADERS = {"Accept": "application/json", "Prefer": "return=representation"}


def _path_of(url: str) -> str:
    """The path of a URL without its query, for messages and logs (query strings may carry $filter values)."""
    return httpx.URL(url).path


class ExactClient:
    """One Exact Online division. `calls` counts the HTTP calls made through this instance (cost per order).

    Raw dicts from `get_all`/`post` carry numbers as Decimal (parsed with parse_float=Decimal), never float.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        host: str,
        division: int,
        auth: httpx.Auth | None = None,
        governor: RateGovernor | None = None,
    ) -> None:
        self.http = http
        self.host = host.rstrip("/")
        self.division = int(division)
        self.auth = auth
        self.governor = governor
        self.calls = 0

    @property
    def base_url(self) -> str:
        return f"{self.host}{API_PREFIX}/{self.division}/"

    async def get_all(
        self,
        path: str,
        *,
        select: Sequence[str],
        filter: str | None = None,
        top: int | None = None,
        orderby: str | None = None,
    ) -> list[dict[str, Any]]:
        """GET `path` under the division and follow `d.__next` until done (or `top` rows)."""
        if not select:
            raise ValueError("Exact needs a $select; never ask for every property")
        params = {"$select": ",".join(select)}
        if filter:
            params["$filter"] = filter
        if top is not None:
            params["$top"] = str(int(top))
        if orderby:
            params["$orderby"] = orderby
        rows = await self._get_pages(self.base_url + path.lstrip("/"), params, limit=top)
        return rows[:top] if top is not None else rows

    async def iter_pages(
        self, path: str, *, select: Sequence[str], filter: str, before_page: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """GET `path` page by page (following `d.__next`), awaiting `before_page` before each call: for long reads
        that must give way to bookings between pages (books check). Bulk endpoints answer 1,000 rows a page."""
        if not select:
            raise ValueError("Exact needs a $select; never ask for every property")
        params: Mapping[str, str] | None = {"$select": ",".join(select), "$filter": filter}
        next_url: str | None = self.base_url + path.lstrip("/")
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            if before_page is not None:
                await before_page()
            response = await self._send("GET", next_url, params=params, counted=True)
            page, next_url = self._page(response)
            params = None  # __next carries every query option of the first request
            yield page
        raise PermanentApiError(f"{VENDOR} kept paging past {MAX_PAGES} pages", vendor=VENDOR)

    async def post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body (Decimal as exact numbers); return the created entity (the `d` object of the 201).

        A timeout here is ambiguous: the document may exist. Look it up by reference before posting again.
        """
        body = encode_json(payload).encode()
        response = await self._send("POST", self.base_url + path.lstrip("/"), content=body, counted=True)
        data = self._json(response)
        entity = data.get("d") if isinstance(data, dict) else None
        if not isinstance(entity, dict):
            raise PermanentApiError(f"{VENDOR} answered a POST without an entity (HTTP {response.status_code})")
        return entity

    async def _get_pages(
        self, url: str, params: Mapping[str, str] | None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None or (limit is not None and len(rows) >= limit):
                return rows
            counted = f"{API_PREFIX}/current/" not in next_url
            response = await self._send("GET", next_url, params=params, counted=counted)
            page, next_url = self._page(response)
            rows.extend(page)
            params = None  # __next carries every query option of the first request
        raise PermanentApiError(f"{VENDOR} kept paging past {MAX_PAGES} pages", vendor=VENDOR)

    def _page(self, response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
        data = self._json(response)
        d = data.get("d") if isinstance(data, dict) else None
        # Most lists come as {"d": {"results": [...]}}, a few function-style endpoints as {"d": [...]}.
        results = d.get("results") if isinstance(d, dict) else d
        if not isinstance(results, list):
            raise PermanentApiError(f"{VENDOR} answered without a result list", vendor=VENDOR)
        next_url = d.get("__next") if isinstance(d, dict) else None
        if next_url is not None and not str(next_url).startswith(self.host + "/"):
            # Never send the bearer token to another host, whatever the answer says.
            raise PermanentApiError(f"{VENDOR} pointed the next page at another host", vendor=VENDOR)
        return [r for r in results if isinstance(r, dict)], next_url

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        counted: bool,
    ) -> httpx.Response:
        """The one place a request leaves: governor first, then HTTP, then map the outcome to the error tree."""
        if self.governor is not None and counted:
            await self.governor.acquire(self.division)
        headers = dict(JSON_HEADERS)
        if content is not None:
            headers["Content-Type"] = "application/json"
        self.calls += 1
        try:
            response = await self.http.request(
                method, url, params=params, content=content, headers=headers, auth=self.auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException as e:
            metrics.EXACT_CALLS.labels(metrics.status_class(None)).inc()
            raise TransientApiError(f"{VENDOR} did not answer in time ({method} {_path_of(url)})", vendor=VENDOR) from e
        except httpx.TransportError as e:
            metrics.EXACT_CALLS.labels(metrics.status_class(None)).inc()
            raise TransientApiError(f"{VENDOR} could not be reached ({type(e).__name__})", vendor=VENDOR) from e
        metrics.EXACT_CALLS.labels(metrics.status_class(response.status_code)).inc()
        if self.governor is not None and counted:
            await self.governor.observe(self.division, response)
        logger.debug("exact %s %s -> %s", method, _path_of(url), response.status_code)
        if response.is_success:
            return response
        raise error_for(response, now=self._now())

    def _now(self) -> dt.datetime:
        """The governor's clock when there is one (the benchmark accelerates it), else the system clock."""
        if self.governor is not None:
            return utcnow(self.governor.clock)
        return utcnow()

    def _json(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PermanentApiError(
                f"{VENDOR} answered with invalid JSON (HTTP {response.status_code})",
                status=response.status_code,
                vendor=VENDOR,
            ) from e

    async def me(self) -> ExactMe:
        """current/Me: the user and their current division (a URL without division: not counted by Exact)."""
        rows = await self._get_pages(f"{self.host}{API_PREFIX}/current/Me", {"$select": ",".join(ME_FIELDS)})
        if not rows:
            raise PermanentApiError(f"{VENDOR} returned no current user", vendor=VENDOR)
        return ExactMe.from_api(rows[0])

    async def list_divisions(self) -> list[ExactDivision]:
        """The divisions (administrations) the signed-in user may access."""
        rows = await self.get_all("system/Divisions", select=DIVISION_FIELDS, orderby="Code")
        return [ExactDivision.from_api(r) for r in rows]

    async def list_vat_codes(self) -> list[ExactVatCode]:
        """Every VAT code, with OssCountry when the division has the OneStopShop feature set.

        Exact rejects a $select naming OssCountry where the feature set is off; then the list is read without it.
        """
        try:
            rows = await self.get_all("vat/VATCodes", select=(*VAT_FIELDS, "OssCountry"), orderby="Code")
        except ValidationError as e:
            if "osscountry" not in str(e).lower():
                raise
            rows = await self.get_all("vat/VATCodes", select=VAT_FIELDS, orderby="Code")
        return [ExactVatCode.from_api(r) for r in rows]

    async def list_gl_accounts(self, *, gl_type: int | None = REVENUE_GL_TYPE) -> list[ExactGLAccount]:
        """G/L accounts of one type (default: revenue, type 110)."""
        filter_ = None if gl_type is None else f"Type eq {int(gl_type)}"
        rows = await self.get_all("financial/GLAccounts", select=GL_FIELDS, filter=filter_, orderby="Code")
        return [ExactGLAccount.from_api(r) for r in rows]

    async def find_gl_account(self, code: str) -> ExactGLAccount | None:
        rows = await self.get_all(
            "financial/GLAccounts", select=GL_FIELDS, filter=f"Code eq {odata_quote(code.strip())}", top=1
        )
        return ExactGLAccount.from_api(rows[0]) if rows else None

    async def list_journals(self, *, journal_type: int | None = SALES_JOURNAL_TYPE) -> list[ExactJournal]:
        """Journals of one type (default: sales, type 20)."""
        filter_ = None if journal_type is None else f"Type eq {int(journal_type)}"
        rows = await self.get_all("financial/Journals", select=JOURNAL_FIELDS, filter=filter_, orderby="Code")
        return [ExactJournal.from_api(r) for r in rows]

    async def list_item_groups(self) -> list[ExactItemGroup]:
        rows = await self.get_all("logistics/ItemGroups", select=ITEM_GROUP_FIELDS, orderby="Code")
        return [ExactItemGroup.from_api(r) for r in rows]

    async def list_sales_items(self, *, limit: int = 600) -> list[ExactItem]:
        """Sales items by code, at most `limit` (a set-up list to pick from, not a catalogue export)."""
        # logistics/Items has mandatory filtering (one of Code, Created, Description, ID, ...): Code ne '' is all.
        rows = await self.get_all(
            "logistics/Items",
            select=ITEM_FIELDS,
            filter="IsSalesItem eq true and Code ne ''",
            orderby="Code",
            top=limit,
        )
        return [ExactItem.from_api(r) for r in rows]

    async def find_item(self, code: str) -> ExactItem | None:
        rows = await self.get_all(
            "logistics/Items", select=ITEM_FIELDS, filter=f"Code eq {odata_quote(code.strip())}", top=1
        )
        return ExactItem.from_api(rows[0]) if rows else None

    async def find_account_by_email(self, email: str) -> ExactAccount | None:
        rows = await self.get_all(
            "crm/Accounts", select=ACCOUNT_FIELDS, filter=f"Email eq {odata_quote(email.strip())}", top=1
        )
        return ExactAccount.from_api(rows[0]) if rows else None

    async def find_account_by_code(self, code: str) -> ExactAccount | None:
        """Accounts.Code is padded to 18 characters; the filter pads too."""
        rows = await self.get_all(
            "crm/Accounts", select=ACCOUNT_FIELDS, filter=f"Code eq {odata_quote(pad_account_code(code))}", top=1
        )
        return ExactAccount.from_api(rows[0]) if rows else None

    async def list_payment_conditions(self) -> list[ExactPaymentCondition]:
        rows = await self.get_all("cashflow/PaymentConditions", select=PAYMENT_CONDITION_FIELDS, orderby="Code")
        return [ExactPaymentCondition.from_api(r) for r in rows]


__all__ = [
    "ExactAccount",
    "ExactClient",
    "ExactDivision",
    "ExactGLAccount",
    "ExactItem",
    "ExactItemGroup",
    "ExactJournal",
    "ExactMe",
    "ExactPaymentCondition",
    "ExactVatCode",
    "AuthError",
    "NotFoundError",
    "RateLimitedError",
    "TransientApiError",
    "encode_json",
    "odata_quote",
    "parse_odata_date",
]
