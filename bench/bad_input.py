"""A seeded barrage of bad requests against the running web process: every one must end in a 4xx, and none may
leave a row behind. (The hypothesis fuzz tests in tests/test_fuzz_*.py search the same space in-process.)
"""

from __future__ import annotations

import json
import random
import string
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.runs import ProofContext
from bench.shops import ProofShop, event_count, sign

NASTY = (
    "1' OR '1'='1",
    "1001; DROP TABLE order_sync;--",
    "<script>alert(1)</script>",
    "1001') or substringof('a',Name) eq true or ('",
    "../../etc/passwd",
    "%00",
    "\u202e1001",
    "1" * 500,
    "١٠٠١",
    "null",
)


@dataclass
class BadInputResult:
    tried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


BadRequest = tuple[str, str, bytes, dict[str, str]]  # method, url, body, headers
JSON = {"content-type": "application/json"}


def _not_json(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    return "POST", url, rng.randbytes(rng.randrange(1, 300)), JSON


def _wrong_shape(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    body = rng.choice(["[]", "1", '"x"', "null", '{"order_number": {}}', '{"status": 2}', "{}"]).encode()
    return "POST", url, body, JSON


def _nasty_values_signed(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    """Correctly signed, so validation (not the signature) must refuse them."""
    body = json.dumps(
        {
            "order_number": rng.choice(NASTY),
            "status": rng.choice([-1, "two", 2.5, None, True, [2], 2**31, 10**30, "99999999999"]),
        }
    )
    msg_id, stamp = f"msg_bad{rng.randrange(10**9)}", str(int(time.time()))
    signature = "v1," + sign(shop.signing_secret, msg_id, stamp, body.encode())
    return (
        "POST",
        url,
        body.encode(),
        JSON | {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature},
    )


def _wrong_signature(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    body = json.dumps({"order_number": "100001", "status": 2}).encode()
    stamp = str(int(time.time()))
    wrong = sign("whsec_" + "A" * 44, "msg_x", stamp, body)
    return (
        "POST",
        url,
        body,
        JSON | {"webhook-id": "msg_x", "webhook-timestamp": stamp, "webhook-signature": f"v1,{wrong}"},
    )


def _wrong_content_type(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    headers = {"content-type": rng.choice(["text/plain", "", "application/xml"])}
    return "POST", url, b'{"order_number": "100001", "status": 2}', headers


def _too_large(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    return "POST", url, b'{"pad": "' + b"x" * (70 * 1024) + b'"}', JSON


def _bad_key(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    key = rng.choice(["short", "x" * 101, "..%2f..%2fadmin", "".join(rng.choices(string.ascii_letters, k=43))])
    return "POST", url.rsplit("/", 1)[0] + f"/{key}", b"{}", JSON


def _garbage_query(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    query = "&".join(f"{rng.choice(NASTY)}={rng.choice(NASTY)}" for _ in range(3))
    return rng.choice(["GET", "PUT", "DELETE", "POST"]), f"{url}?{query}", b"", JSON


def _absurd_timestamp(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    stamp = str(rng.choice([0, -1, 10**12, 17000000000]))
    headers = JSON | {"webhook-id": "m", "webhook-timestamp": stamp, "webhook-signature": "v1,AAAA"}
    return "POST", url, b'{"order_number": "1", "status": 2}', headers


def _unknown_signature_version(rng: random.Random, shop: ProofShop, url: str) -> BadRequest:
    body = json.dumps({"order_number": "100001", "status": 2, "x": "\udcff" * 3}).encode()
    return "POST", url, body, JSON | {"webhook-signature": "v2," + "A" * 200}


KINDS = (
    _not_json,
    _wrong_shape,
    _nasty_values_signed,
    _wrong_signature,
    _wrong_content_type,
    _too_large,
    _bad_key,
    _garbage_query,
    _absurd_timestamp,
    _unknown_signature_version,
)


def _bad_request(rng: random.Random, shop: ProofShop, base: str) -> BadRequest:
    """One bad request of a random kind; never a valid, correctly signed notice."""
    return rng.choice(KINDS)(rng, shop, f"{base}/webhooks/mijnwebwinkel/{shop.webhook_key}")


async def barrage(ctx: ProofContext, shop: ProofShop, *, count: int, seed: int = 8) -> BadInputResult:
    """Send `count` bad requests to the web process; assert 4xx each and no new rows for the target shop."""
    rng = random.Random(seed)  # a fixed seed: the same barrage every run
    result = BadInputResult()
    before = await event_count(ctx.engine, [shop.integration_id])
    base = ctx.stack.url("web")
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(count):
            method, url, body, headers = _bad_request(rng, shop, base)
            try:
                response = await client.request(method, url, content=body, headers=headers)
            except httpx.HTTPError as e:
                result.problems.append(f"{method} {url[:80]}: {type(e).__name__}")
                continue
            result.tried += 1
            result.statuses[response.status_code] += 1
            if not 400 <= response.status_code < 500:
                result.problems.append(f"{method} answered {response.status_code}: {response.text[:120]}")
    after = await event_count(ctx.engine, [shop.integration_id])
    if after != before:
        result.problems.append(f"bad requests left {after - before} order events behind")
    return result
