import dataclasses
import time

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.environment import start_redis


def test_healthz_answers_while_process_is_alive(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_readyz_reports_database_and_redis_ready(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_readyz_names_redis_when_it_dies_and_recovers_when_it_returns(clean_state: Settings) -> None:
    private = start_redis()
    app = create_app(dataclasses.replace(clean_state, redis_url=private.url))
    try:
        with TestClient(app) as client:
            assert client.get("/readyz").status_code == 200
            private.stop()
            r = client.get("/readyz")
            assert r.status_code == 503, r.text
            assert "redis" in r.json()["down"]
            assert "database" not in r.json()["down"]
            restarted = start_redis(private.port)
            try:
                assert wait_for(lambda: client.get("/readyz").status_code == 200)
            finally:
                restarted.stop()
    finally:
        private.stop()


def test_oversized_body_gets_413_before_reaching_a_route(client: TestClient) -> None:
    r = client.post(
        "/webhooks/mijnwebwinkel/anything", content=b"x" * (65 * 1024), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
