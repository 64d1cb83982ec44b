import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway import shop_connection, tables
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.queue import QUEUE_DEFAULT, create_arq_pool
from gateway.routes import webhooks
from gateway.routes.webhooks import sign
from gateway.settings import Settings
from tests.support.environment import run_in_thread
from tests.support.factories import create_active_integration


@dataclass(frozen=True)
class Shop:
    integration_id: int
    key: str
    secret: str | None

    @property
    def url(self) -> str:
        return f"/webhooks/mijnwebwinkel/{self.key}"


async def _make_shop(settings: Settings, *, signed: bool) -> Shop:
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            integration = await create_active_integration(conn)
            key = await shop_connection.rotate_webhook_key(conn, integration_id=integration.id)
            secret = None
            if signed:
                secret = await shop_connection.rotate_signing_secret(
                    conn, integration_id=integration.id, cipher=Cipher(settings.encryption_keys)
                )
    finally:
        await engine.dispose()
    return Shop(integration.id, key, secret)


async def _counts(settings: Settings) -> tuple[int, int, int]:
    """(order events, order syncs, queued jobs)."""
    engine = create_engine(settings.database_url)
    pool = await create_arq_pool(settings.redis_url)
    try:
        async with engine.connect() as conn:
            events = (await conn.execute(select(func.count()).select_from(tables.order_event))).scalar_one()
            syncs = (await conn.execute(select(func.count()).select_from(tables.order_sync))).scalar_one()
        jobs = await pool.zcard(QUEUE_DEFAULT)
    finally:
        await pool.aclose()
        await engine.dispose()
    return int(events), int(syncs), int(jobs)


def counts(settings: Settings) -> tuple[int, int, int]:
    return run_in_thread(_counts(settings))


@pytest.fixture
def unsigned_shop(client: TestClient, settings: Settings) -> Shop:
    """An integration with a webhook address and no signing secret (notices are taken unsigned)."""
    return run_in_thread(_make_shop(settings, signed=False))


@pytest.fixture
def signed_shop(client: TestClient, settings: Settings) -> Shop:
    """An integration with a webhook address and a signing secret."""
    return run_in_thread(_make_shop(settings, signed=True))


def signed_headers(secret: str, body: bytes, *, msg_id: str = "msg_2kSx7", at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{sign(secret, msg_id, timestamp, body)}",
    }


NOTICE = json.dumps({"order_number": "1001", "status": 2}).encode()
JSON = {"content-type": "application/json"}


def test_a_valid_notice_is_accepted_recorded_and_queued(
    client: TestClient, settings: Settings, unsigned_shop: Shop
) -> None:
    r = client.post(unsigned_shop.url, content=NOTICE, headers=JSON)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "result": "queued"}
    assert counts(settings) == (1, 1, 1)


def test_duplicate_and_replayed_notices_give_one_row_and_one_job(
    client: TestClient, settings: Settings, unsigned_shop: Shop
) -> None:
    for _ in range(2):
        assert client.post(unsigned_shop.url, content=NOTICE, headers=JSON).status_code == 202
    for _ in range(2):
        r = client.post(unsigned_shop.url, content=NOTICE, headers={**JSON, "webhook-id": "msg_replayed"})
        assert r.status_code == 202, r.text
    assert r.json()["result"] == "duplicate"
    assert counts(settings) == (2, 1, 1)  # two distinct notices, one order, one job


def test_a_status_the_shop_did_not_select_is_recorded_as_skipped(
    client: TestClient, settings: Settings, unsigned_shop: Shop
) -> None:
    r = client.post(unsigned_shop.url, json={"order_number": 1002, "status": "1"})
    assert r.status_code == 202, r.text
    assert r.json()["result"] == "skipped"
    assert counts(settings) == (1, 1, 0)


def _oversize() -> bytes:
    return json.dumps({"order_number": "1", "status": 2, "pad": "x" * (64 * 1024)}).encode()


def _chunks() -> Iterator[bytes]:
    body = _oversize()
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        pytest.param(None, _oversize(), JSON, 413, id="oversize"),
        pytest.param(None, _chunks, JSON, 413, id="oversize-chunked"),
        pytest.param(None, b"{not json", JSON, 400, id="malformed-json"),
        pytest.param(None, b"[1, 2]", JSON, 400, id="not-an-object"),
        pytest.param(None, b'{"status": 2}', JSON, 422, id="no-order-number"),
        pytest.param(None, b'{"order_number": "../x", "status": 2}', JSON, 422, id="bad-order-number"),
        pytest.param(None, b'{"order_number": "1001", "status": "paid"}', JSON, 422, id="bad-status"),
        pytest.param(None, b'{"order_number": "1001", "status": true}', JSON, 422, id="boolean-status"),
        pytest.param(None, NOTICE, {"content-type": "text/plain"}, 415, id="wrong-content-type"),
        pytest.param(None, NOTICE, {"content-type": "application/x-www-form-urlencoded"}, 415, id="form"),
        pytest.param("/webhooks/mijnwebwinkel/" + "A" * 43, NOTICE, JSON, 404, id="unknown-key"),
        pytest.param("/webhooks/mijnwebwinkel/short", NOTICE, JSON, 404, id="malformed-key"),
    ],
)
def test_bad_requests_get_a_4xx_and_store_nothing(
    client: TestClient, settings: Settings, unsigned_shop: Shop, path, body, headers, status
) -> None:
    r = client.post(path or unsigned_shop.url, content=body() if callable(body) else body, headers=headers)
    assert r.status_code == status, r.text
    assert counts(settings) == (0, 0, 0)


def test_a_signed_notice_is_verified_and_accepted(client: TestClient, settings: Settings, signed_shop: Shop) -> None:
    assert signed_shop.secret
    r = client.post(signed_shop.url, content=NOTICE, headers=signed_headers(signed_shop.secret, NOTICE))
    assert r.status_code == 202, r.text
    assert counts(settings) == (1, 1, 1)


def test_one_matching_signature_among_several_is_enough(
    client: TestClient, settings: Settings, signed_shop: Shop
) -> None:
    assert signed_shop.secret
    headers = signed_headers(signed_shop.secret, NOTICE)
    headers["webhook-signature"] = "v1,bm90LXRoaXMtb25l " + headers["webhook-signature"]
    assert client.post(signed_shop.url, content=NOTICE, headers=headers).status_code == 202


def _tampered(secret: str) -> dict[str, str]:
    return signed_headers(secret, b'{"order_number": "9999", "status": 2}')


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda secret: JSON, id="unsigned"),
        pytest.param(_tampered, id="body-changed"),
        pytest.param(lambda secret: signed_headers("whsec_" + "A" * 44, NOTICE), id="other-secret"),
        pytest.param(lambda secret: signed_headers(secret, NOTICE, at=time.time() - 301), id="expired"),
        pytest.param(lambda secret: signed_headers(secret, NOTICE, at=time.time() + 360), id="from-the-future"),
        pytest.param(lambda secret: {**signed_headers(secret, NOTICE), "webhook-id": "msg_other"}, id="other-id"),
        pytest.param(lambda secret: {**signed_headers(secret, NOTICE), "webhook-timestamp": "soon"}, id="bad-time"),
    ],
)
def test_bad_or_expired_signatures_get_401_and_store_nothing(
    client: TestClient, settings: Settings, signed_shop: Shop, make_headers
) -> None:
    r = client.post(signed_shop.url, content=NOTICE, headers=make_headers(signed_shop.secret))
    assert r.status_code == 401, r.text
    assert counts(settings) == (0, 0, 0)


def test_a_replayed_signed_notice_is_one_row_and_one_job(
    client: TestClient, settings: Settings, signed_shop: Shop
) -> None:
    assert signed_shop.secret
    headers = signed_headers(signed_shop.secret, NOTICE, msg_id="msg_once")
    results = [client.post(signed_shop.url, content=NOTICE, headers=headers).json()["result"] for _ in range(3)]
    assert results == ["queued", "duplicate", "duplicate"]
    assert counts(settings) == (1, 1, 1)


def test_the_webhook_key_and_secret_never_reach_the_logs(
    client: TestClient, settings: Settings, signed_shop: Shop, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    assert signed_shop.secret
    client.post(signed_shop.url, content=NOTICE, headers=signed_headers(signed_shop.secret, NOTICE))
    client.post(signed_shop.url, content=b"{}", headers=JSON)
    assert "/webhooks/mijnwebwinkel/[redacted]" in caplog.text  # the access line was written, redacted
    assert signed_shop.key not in caplog.text
    assert signed_shop.secret not in caplog.text


async def _rotate(settings: Settings, integration_id: int) -> str:
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            return await shop_connection.rotate_webhook_key(conn, integration_id=integration_id)
    finally:
        await engine.dispose()


def test_a_rotated_key_stops_working_once_the_lookup_expires(
    client: TestClient, settings: Settings, unsigned_shop: Shop, monkeypatch
) -> None:
    monkeypatch.setattr(webhooks, "LOOKUP_TTL_SECONDS", 0.0)
    assert client.post(unsigned_shop.url, content=NOTICE, headers=JSON).status_code == 202
    new_key = run_in_thread(_rotate(settings, unsigned_shop.integration_id))
    assert client.post(unsigned_shop.url, content=NOTICE, headers=JSON).status_code == 404
    r = client.post(f"/webhooks/mijnwebwinkel/{new_key}", json={"order_number": "1003", "status": 2})
    assert r.status_code == 202, r.text


def test_a_status_beyond_the_status_column_is_refused(
    client: TestClient, settings: Settings, unsigned_shop: Shop
) -> None:
    r = client.post(unsigned_shop.url, json={"order_number": "1001", "status": 2**31})
    assert r.status_code == 422, r.text
    assert counts(settings) == (0, 0, 0)
