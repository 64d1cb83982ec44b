"""Fuzzing the webhook intake (hypothesis): bodies, content types, signature headers, timestamps, ids, query strings
and URL keys, and valid JSON that is hostile (deep nesting, numbers of thousands of digits). Every request ends in a
clean answer below 500; whatever is accepted is stored exactly as sent and for the shop its URL names, never for
another; nothing rejected leaves a row; no stored value is garbage.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import secrets
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.routes.webhooks import sign
from gateway.settings import Settings
from gateway.shop_connection import rotate_signing_secret, rotate_webhook_key
from tests.support.environment import run_in_thread
from tests.support.factories import create_active_integration

ORDER_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,40}$")
INT32 = 2**31 - 1
FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,  # no replay of examples saved by earlier runs with other strategies
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ASCII = st.characters(min_codepoint=32, max_codepoint=126)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    # Until test_a_status_of_superscript_digits_is_refused passes, leave out the strings it pins.
    st.text(max_size=60),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
notice_like = st.fixed_dictionaries(
    {
        "order_number": st.one_of(st.from_regex(ORDER_NUMBER, fullmatch=True), json_scalars),
        "status": st.one_of(
            st.integers(min_value=-5, max_value=12),
            st.sampled_from([INT32, INT32 + 1, 2**63, -(2**31)]),  # the column's edges
            st.integers(min_value=-(2**70), max_value=2**70),
            json_scalars,
            st.from_regex(r"\A ?[0-9]{1,25} ?\Z"),
        ),
    },
    optional={"extra": json_values},
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    notice_like.map(lambda v: json.dumps(v).encode()),
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "", "multipart/form-data"]
)


class Shops:
    """Two active shops: A signs its notices, B has no signing secret (unsigned notices are its way in)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.a, self.b, self.key_a, self.key_b, self.secret_a = run_in_thread(self._create())

    async def _create(self) -> tuple[int, int, str, str, str]:
        engine = create_engine(self.settings.database_url)
        try:
            async with engine.begin() as conn:
                a = await create_active_integration(conn)
                b = await create_active_integration(conn)
                key_a = await rotate_webhook_key(conn, integration_id=a.id)
                key_b = await rotate_webhook_key(conn, integration_id=b.id)
                secret_a = await rotate_signing_secret(
                    conn, integration_id=a.id, cipher=Cipher(self.settings.encryption_keys)
                )
        finally:
            await engine.dispose()
        return a.id, b.id, key_a, key_b, secret_a

    def events(self) -> list[Any]:
        async def read() -> list[Any]:
            engine = create_engine(self.settings.database_url)
            try:
                async with engine.connect() as conn:
                    c = tables.order_event.c
                    query = select(c.integration_id, c.order_number, c.status_id, c.dedupe_key).order_by(c.id)
                    return list((await conn.execute(query)).all())
            finally:
                await engine.dispose()

        return list(run_in_thread(read()))


@pytest.fixture
def shops(client: TestClient, settings: Settings) -> Shops:
    return Shops(settings)


def headers_for(shops: Shops, body: bytes, mode: str, skew: int, msg_id: str, content_type: str) -> dict[str, str]:
    stamp = str(int(time.time()) + skew)
    headers = {"content-type": content_type, "webhook-id": msg_id, "webhook-timestamp": stamp}
    if mode == "valid":
        headers["webhook-signature"] = f"v1,{sign(shops.secret_a, msg_id, stamp, body)}"
    elif mode == "other_secret":
        headers["webhook-signature"] = f"v1,{sign('whsec_' + 'B' * 44, msg_id, stamp, body)}"
    elif mode == "garbage":
        headers["webhook-signature"] = "v1,not-base64!! v2,AAAA"
    return headers


def parsed_notice(body: bytes) -> tuple[str, int] | None:
    """What the route should accept: a JSON object with a plausible order number and a status id (an int in the
    database's range, or digits in a string)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    number, status = data.get("order_number"), data.get("status")
    if isinstance(number, bool) or not isinstance(number, str | int) or not ORDER_NUMBER.match(str(number)):
        return None
    if isinstance(status, str) and re.fullmatch(r"[0-9]{1,25}", status.strip()):
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= INT32:
        return None
    return str(number), status


@FUZZ
@given(
    body=bodies,
    target=st.sampled_from(["a", "b", "unknown"]),
    mode=st.sampled_from(["valid", "none", "garbage", "other_secret"]),
    skew=st.one_of(st.just(0), st.integers(min_value=-(10**6), max_value=10**6)),
    msg_id=st.one_of(
        st.text(ASCII, min_size=1, max_size=20).map(lambda t: f"m{secrets.token_hex(4)}{t}"),
        st.text(ASCII, max_size=130),
    ),
    content_type=content_types,
    query=st.dictionaries(st.text(ASCII, min_size=1, max_size=10), st.text(ASCII, max_size=20), max_size=3),
)
def test_any_request_ends_cleanly_and_only_valid_notices_are_stored(
    client: TestClient,
    shops: Shops,
    body: bytes,
    target: str,
    mode: str,
    skew: int,
    msg_id: str,
    content_type: str,
    query: dict[str, str],
) -> None:
    key = {"a": shops.key_a, "b": shops.key_b, "unknown": secrets.token_urlsafe(32)}[target]
    before = shops.events()
    headers = headers_for(shops, body, mode, skew, msg_id, content_type)
    response = client.post(f"/webhooks/mijnwebwinkel/{key}", content=body, headers=headers, params=query)
    assert response.status_code < 500, response.text
    after = shops.events()
    new = after[len(before) :]
    notice = parsed_notice(body)
    expected = expectation(notice, target=target, mode=mode, skew=skew, msg_id=msg_id, content_type=content_type)
    if response.status_code == 202:
        assert expected is not False, f"accepted: {body!r} {headers}"
        assert response.json()["accepted"] is True
    else:
        assert 400 <= response.status_code < 500
        assert expected is not True, f"refused with {response.status_code}: {response.text} for {body!r} {headers}"
        assert not new, f"a refused request left rows: {new}"
    for row in new:
        assert row.integration_id == (shops.a if target == "a" else shops.b)
        assert (row.order_number, row.status_id) == notice
    for row in after:
        assert ORDER_NUMBER.match(row.order_number), row
        assert 0 <= row.status_id <= INT32, row


def expectation(
    notice: tuple[str, int] | None, *, target: str, mode: str, skew: int, msg_id: str, content_type: str
) -> bool | None:
    """True: must be accepted; False: must be refused; None: either (a timestamp right at the 5-minute edge)."""
    if notice is None or content_type.split(";")[0].strip().lower() != "application/json" or target == "unknown":
        return False
    if target == "b":
        return True  # no signing secret: the URL key alone admits the notice
    if mode != "valid" or not msg_id or msg_id != msg_id.strip():
        return False
    if 290 <= abs(skew) <= 310:
        return None
    return abs(skew) < 300


MAX_DEPTH = 32  # the documented bounds (docs/security.md): deeper documents and longer numbers are refused
MAX_NUMBER_LENGTH = 40


def hostile_body(kind: str, size: int) -> bytes:
    """A valid JSON notice carrying `size` levels of nesting or a number of `size` digits."""
    if kind == "arrays":
        return b'{"order_number": "8001", "status": 2, "extra": ' + b"[" * size + b"]" * size + b"}"
    if kind == "objects":
        return b'{"order_number": "8001", "status": 2, "extra": ' + b'{"a": ' * size + b"1" + b"}" * size + b"}"
    if kind == "status":
        return b'{"order_number": "8001", "status": ' + b"9" * size + b"}"
    return b'{"order_number": "8001", "status": 2, "extra": -' + b"7" * size + b".5e1}"


@FUZZ
@given(
    kind=st.sampled_from(["arrays", "objects", "status", "float"]),
    size=st.one_of(st.integers(min_value=1, max_value=60), st.integers(min_value=60, max_value=6000)),
)
def test_hostile_nesting_and_huge_numbers_end_cleanly(client: TestClient, shops: Shops, kind: str, size: int) -> None:
    body = hostile_body(kind, size)
    before = shops.events()
    response = client.post(
        f"/webhooks/mijnwebwinkel/{shops.key_b}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, response.text
    new = shops.events()[len(before) :]
    depth = size + 1 if kind in {"arrays", "objects"} else 1
    number_length = {"status": size, "float": size + 5}.get(kind, 1)
    if depth > MAX_DEPTH or number_length > MAX_NUMBER_LENGTH:
        assert response.status_code == 400, response.text
        assert not new
    elif kind == "status":
        assert response.status_code == (202 if int(b"9" * size) <= INT32 else 422), response.text
    else:
        assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 5000 + b"]" * 5000, id="5000-nested-arrays"),
        pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, id="3000-nested-objects"),
        pytest.param(b'{"order_number": "1", "status": ' + b"1" * 4301 + b"}", id="4301-digit-integer"),
    ],
)
def test_the_reported_bodies_are_refused_with_400(client: TestClient, shops: Shops, body: bytes) -> None:
    """Correctly signed, valid JSON: each of these answered 500 before the parser had bounds."""
    msg_id, stamp = f"m{secrets.token_hex(6)}", str(int(time.time()))
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": stamp}
    headers["webhook-signature"] = f"v1,{sign(shops.secret_a, msg_id, stamp, body)}"
    response = client.post(f"/webhooks/mijnwebwinkel/{shops.key_a}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert shops.events() == []


def test_a_status_of_superscript_digits_is_refused(client: TestClient, shops: Shops) -> None:
    body = json.dumps({"order_number": "7001", "status": "²"}).encode()
    response = client.post(
        f"/webhooks/mijnwebwinkel/{shops.key_b}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert shops.events() == []


def test_a_status_beyond_the_column_is_refused(client: TestClient, shops: Shops) -> None:
    body = json.dumps({"order_number": "7001", "status": INT32 + 1}).encode()
    response = client.post(
        f"/webhooks/mijnwebwinkel/{shops.key_b}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert shops.events() == []


async def test_one_bad_notice_never_fails_another_shops_notices(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    """Notices that arrive together may be written together; a poisonous one (a status no column can hold) must not
    take another shop's notices down with it."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        good = await create_active_integration(conn)
        bad = await create_active_integration(conn)
        key_good = await rotate_webhook_key(conn, integration_id=good.id)
        key_bad = await rotate_webhook_key(conn, integration_id=bad.id)
        secret = await rotate_signing_secret(conn, integration_id=good.id, cipher=cipher)

    def post(i: int) -> int:
        headers = {"content-type": "application/json"}
        if i % 5 == 0:
            body = json.dumps({"order_number": f"66{i}", "status": 2**70}).encode()
            return client.post(f"/webhooks/mijnwebwinkel/{key_bad}", content=body, headers=headers).status_code
        body = json.dumps({"order_number": f"55{i}", "status": 2}).encode()
        msg_id, stamp = f"msg_{i}_{secrets.token_hex(4)}", str(int(time.time()))
        headers |= {"webhook-id": msg_id, "webhook-timestamp": stamp}
        headers["webhook-signature"] = f"v1,{sign(secret, msg_id, stamp, body)}"
        return client.post(f"/webhooks/mijnwebwinkel/{key_good}", content=body, headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(60)))
    good_answers = [s for i, s in enumerate(statuses) if i % 5]
    bad_answers = [s for i, s in enumerate(statuses) if i % 5 == 0]
    assert all(400 <= s < 500 for s in bad_answers), statuses
    assert set(good_answers) == {202}, statuses
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.order_event.c.integration_id))).all()
    assert sorted(r[0] for r in rows) == [good.id] * len(good_answers)
