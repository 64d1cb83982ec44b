import json
import logging

import pytest

from gateway.logs import JsonFormatter, bind, log_context, redact


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        pytest.param("GET https://api/v1/orders?token=abc123&partner_token=zz9", "abc123", id="query-token"),
        pytest.param("GET https://api/v1/orders?token=abc123&partner_token=zz9", "zz9", id="query-partner"),
        pytest.param('{"access_token": "eyJhbGciOi", "expires_in": "600"}', "eyJhbGciOi", id="json-access"),
        pytest.param("refresh_token=r-0001&grant_type=refresh_token", "r-0001", id="form-refresh"),
        pytest.param("Authorization: Bearer eyJ.abc.def", "eyJ.abc.def", id="bearer"),
        pytest.param("POST /webhooks/mijnwebwinkel/k3y-s3cret 202", "k3y-s3cret", id="webhook-key"),
        pytest.param("callback?code=c0de&state=st4te", "c0de", id="oauth-code"),
    ],
)
def test_redact_removes_secrets(raw: str, secret: str) -> None:
    assert secret not in redact(raw)


def test_every_logger_goes_through_redaction(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("calling %s", "https://x/v1/store?token=SHOP-SECRET")
    assert "SHOP-SECRET" not in caplog.text
    assert "token=[redacted]" in caplog.text


def test_json_lines_carry_bound_ids() -> None:
    token = bind(request_id="r1", integration_id=7)
    try:
        record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "booked %s", ("5001",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        log_context.reset(token)
    assert line["event"] == "booked 5001"
    assert line["request_id"] == "r1"
    assert line["integration_id"] == 7
    assert line["level"] == "info"
