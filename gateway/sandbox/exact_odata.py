"""The OData v2 subset the sandbox Exact Online understands: $filter, $select, $orderby, $top, $skiptoken paging,
"/Date(ms)/" dates and Exact's error envelope. Enough for the gateway; anything else is a 400 like Exact's."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse

PAGE_SIZE = 60  # Exact's CRUD endpoints return at most 60 rows a page
_TOKEN = re.compile(
    r"\s*(?:(?P<guid>guid'[0-9a-fA-F-]{36}')|(?P<datetime>datetime'[^']*')|(?P<str>'(?:[^']|'')*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_NO_CONSTANT = object()


class ODataError(Exception):
    """A request the sandbox refuses like Exact would (400 with the error envelope)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_response(message: str, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Exact's error envelope: {"error": {"code": "", "message": {"lang": "", "value": "..."}}}."""
    body = {"error": {"code": "", "message": {"lang": "", "value": message}}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def odata_date(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return f"/Date({int(value.timestamp() * 1000)})/"


def parse_iso_date(value: Any, field: str) -> dt.datetime:
    """Exact accepts ISO 8601 dates on POST ("2026-11-20T00:00:00", with or without a zone)."""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as e:
        raise ODataError(f"{field}: invalid date '{str(value)[:40]}'") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ODataError("Bad Request - Error in query syntax.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over: or-expr := and-expr ('or' and-expr)*; and-expr := atom ('and' atom)*;
    atom := '(' or-expr ')' | operand OP operand; operand := Field | trim(Field) | tolower(Field) | literal."""

    def __init__(self, text: str, fields: set[str]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.fields = fields
        self.used: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ODataError("Bad Request - Error in query syntax.")
        self.pos += 1
        return token

    def parse(self) -> Callable[[Mapping[str, Any]], bool]:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise ODataError("Bad Request - Error in query syntax.")
        return predicate

    def or_expr(self) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.and_expr()]
        while self.peek() == ("word", "or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else lambda row: any(p(row) for p in parts)

    def and_expr(self) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.atom()]
        while self.peek() == ("word", "and"):
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else lambda row: all(p(row) for p in parts)

    def atom(self) -> Callable[[Mapping[str, Any]], bool]:
        if self.peek() == ("lp", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("rp", ")"):
                raise ODataError("Bad Request - Error in query syntax.")
            return inner
        left = self.operand()
        kind, op = self.take()
        if kind != "word" or op not in _COMPARE:
            raise ODataError("Bad Request - Error in query syntax.")
        right = self.operand()
        constant = getattr(right, "constant", _NO_CONSTANT)
        if op == "eq" and isinstance(constant, str) and not _looks_like_guid(constant):
            return lambda row: left(row) == constant  # the common look-up (YourRef eq '5001'), kept fast
        return lambda row: _compare(left(row), op, right(row))

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, value = self.take()
        if kind == "word" and value in {"trim", "tolower", "toupper"}:
            if self.take() != ("lp", "("):
                raise ODataError("Bad Request - Error in query syntax.")
            inner = self.operand()
            if self.take() != ("rp", ")"):
                raise ODataError("Bad Request - Error in query syntax.")
            functions: dict[str, Callable[[str], str]] = {"trim": str.strip, "tolower": str.lower, "toupper": str.upper}
            fn = functions[value]
            return lambda row: None if inner(row) is None else fn(str(inner(row)))
        return self._literal_or_field(kind, value)

    def _literal_or_field(self, kind: str, value: str) -> Callable[[Mapping[str, Any]], Any]:
        if kind == "str":
            text = value[1:-1].replace("''", "'")

            def literal(row: Mapping[str, Any]) -> str:
                return text

            # The compiled literal carries its text so `atom` can take the fast path for `Field eq 'text'`.
            literal.constant = text  # type: ignore[attr-defined]
            return literal
        if kind == "guid":
            guid = value[5:-1].lower()
            return lambda row: guid
        if kind == "datetime":
            moment = parse_iso_date(value[9:-1], "$filter")
            return lambda row: moment
        if kind == "num":
            number = Decimal(value)
            return lambda row: number
        if kind == "word" and value in {"true", "false", "null"}:
            constant = {"true": True, "false": False, "null": None}[value]
            return lambda row: constant
        if kind == "word":
            if value not in self.fields:
                raise ODataError(f"No property '{value}' exists in type 'Exact.Web.Api.Models'.")
            self.used.add(value)
            return lambda row: row.get(value)
        raise ODataError("Bad Request - Error in query syntax.")


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str) and _looks_like_guid(right):
        left = left.lower()
    if isinstance(left, int | float) and not isinstance(left, bool):
        left = Decimal(str(left))
    if isinstance(right, int | float) and not isinstance(right, bool):
        right = Decimal(str(right))
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        return bool({"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op])
    except TypeError as e:
        raise ODataError("Bad Request - Error in query syntax.") from e


def _looks_like_guid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def compile_filter(text: str, fields: set[str]) -> tuple[Callable[[Mapping[str, Any]], bool], set[str]]:
    """A predicate over rows, and the fields the filter names (for Exact's mandatory-filtering rule)."""
    parser = _Parser(text, fields)
    return parser.parse(), parser.used


def query_rows(
    rows: Sequence[Mapping[str, Any]],
    params: Mapping[str, str],
    *,
    fields: set[str],
    type_name: str,
    mandatory_filter: set[str] | None = None,
    page_size: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], int | None]:
    """Apply $filter/$orderby/$skiptoken/$top/$select; return one page and the offset of the next, if any."""
    select = [s.strip() for s in params.get("$select", "").split(",") if s.strip()]
    for name in select:
        if name not in fields:
            raise ODataError(f"Could not find a property named '{name}' on type '{type_name}'.")
    filtered = list(rows)
    filter_text = params.get("$filter")
    if mandatory_filter is not None and (
        not filter_text or not (compile_filter(filter_text, fields)[1] & mandatory_filter)
    ):
        names = ", ".join(sorted(mandatory_filter))
        raise ODataError(
            "This endpoint has mandatory filtering applied. A GET request for this endpoint must have a $filter "
            f"parameter with one of the following fields in the url: {names}."
        )
    if filter_text:
        predicate, _ = compile_filter(filter_text, fields)
        filtered = [r for r in filtered if predicate(r)]
    filtered = _order(filtered, params.get("$orderby"), fields)
    offset = _int_param(params, "$skiptoken", 0) or 0  # never None: the default is 0
    top = _int_param(params, "$top", None)
    end = len(filtered) if top is None else min(len(filtered), top)
    page_end = min(end, offset + page_size)
    page = [_project(r, select) for r in filtered[offset:page_end]]
    return page, (page_end if page_end < end else None)


def _order(rows: list[Mapping[str, Any]], orderby: str | None, fields: set[str]) -> list[Mapping[str, Any]]:
    if not orderby:
        return rows
    name, _, direction = orderby.strip().partition(" ")
    if name not in fields or direction.strip() not in {"", "asc", "desc"}:
        raise ODataError("Bad Request - Error in query syntax.")
    return sorted(rows, key=lambda r: (r.get(name) is None, str(r.get(name))), reverse=direction.strip() == "desc")


def _int_param(params: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ODataError("Bad Request - Error in query syntax.") from e
    if value < 0:
        raise ODataError("Bad Request - Error in query syntax.")
    return value


def _project(row: Mapping[str, Any], select: Sequence[str]) -> dict[str, Any]:
    names = select or list(row)
    return {name: jsonable(row.get(name)) for name in names}


def jsonable(value: Any) -> Any:
    """Stored values as Exact shows them: dates as "/Date(ms)/", Decimals as JSON numbers."""
    if isinstance(value, dt.datetime | dt.date):
        return odata_date(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return {"__deferred": {"uri": ""}}  # line collections are deferred in GET answers, as in Exact
    return value


def next_link(base: str, params: Mapping[str, str], offset: int) -> str:
    kept = {k: v for k, v in params.items() if k != "$skiptoken"}
    return f"{base}?{urlencode({**kept, '$skiptoken': str(offset)})}"
