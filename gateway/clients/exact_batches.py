"""Look-ups of many Exact records by code in few calls: one GET with an `or` chain per chunk of codes, each chunk
sized so the encoded URL stays under Exact's limit. No SQL, no retries; the callers decide what to remember.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from gateway.clients.exact import ExactClient
from gateway.clients.exact_models import GL_FIELDS, ITEM_FIELDS, ExactGLAccount, ExactItem
from gateway.clients.exact_odata import odata_quote

# Exact refuses URLs over 6,000 characters after encoding (docs/exact.md); the rest of the URL (host, division,
# path, $select, $top) takes under 500, so a filter may take this many encoded characters.
FILTER_BUDGET = 5000
# At most this many codes per call whatever their length: Exact answers standard endpoints 60 rows a page, so a
# chunk's answer never needs a second page.
MAX_CODES_PER_CALL = 60


def code_chunks(codes: Sequence[str], field: str = "Code") -> Iterator[list[str]]:
    """`codes` (distinct, stripped, non-empty) in chunks whose `field eq '…' or …` filter fits FILTER_BUDGET."""
    chunk: list[str] = []
    used = 0
    for code in dict.fromkeys(c.strip() for c in codes if c.strip()):
        cost = len(quote(f"{field} eq {odata_quote(code)} or ", safe=""))
        if chunk and (used + cost > FILTER_BUDGET or len(chunk) >= MAX_CODES_PER_CALL):
            yield chunk
            chunk, used = [], 0
        chunk.append(code)
        used += cost
    if chunk:
        yield chunk


def code_filter(codes: Sequence[str], field: str = "Code") -> str:
    return " or ".join(f"{field} eq {odata_quote(code)}" for code in codes)


async def find_by_codes(
    client: ExactClient, path: str, *, select: Sequence[str], codes: Sequence[str], chunks: int | None = None
) -> dict[str, dict[str, Any]]:
    """Rows of `path` whose Code is one of `codes`, by stripped code; at most `chunks` calls (None: all of them)."""
    found: dict[str, dict[str, Any]] = {}
    for number, chunk in enumerate(code_chunks(codes)):
        if chunks is not None and number >= chunks:
            break
        rows = await client.get_all(path, select=select, filter=code_filter(chunk), top=len(chunk))
        found.update({str(row.get("Code") or "").strip(): row for row in rows})
    return found


async def find_gl_accounts(client: ExactClient, codes: Sequence[str]) -> dict[str, ExactGLAccount]:
    """G/L accounts by code, in as few calls as the URL limit allows; codes Exact does not know are left out."""
    rows = await find_by_codes(client, "financial/GLAccounts", select=GL_FIELDS, codes=codes)
    return {code: ExactGLAccount.from_api(row) for code, row in rows.items()}


async def find_items(client: ExactClient, codes: Sequence[str], *, chunks: int | None = None) -> dict[str, ExactItem]:
    """Items by code (at most `chunks` calls); codes Exact does not know are left out."""
    rows = await find_by_codes(client, "logistics/Items", select=ITEM_FIELDS, codes=codes, chunks=chunks)
    return {code: ExactItem.from_api(row) for code, row in rows.items()}
