"""State of the sandbox Mijnwebwinkel (shops, fault switches, webhook target) and its small shared helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from starlette.responses import JSONResponse

from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN, SandboxOrder, SandboxShop

FAULT_MODES = ("slow", "429", "500", "bad_token")


def shop_now() -> datetime:
    """The shop's clock: local Dutch time without a zone, as the API's times are (docs/mijnwebwinkel.md)."""
    try:
        zone: Any = ZoneInfo("Europe/Amsterdam")
    except ZoneInfoNotFoundError:
        zone = timezone(timedelta(hours=1))
    return datetime.now(zone).replace(tzinfo=None, microsecond=0)


@dataclass
class Faults:
    mode: str | None = None
    remaining: int | None = None  # None: until switched off
    seconds: float = 3.0

    def take(self) -> str | None:
        """The fault for this request, counting it down."""
        if self.mode is None:
            return None
        mode = self.mode
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode, self.remaining = None, None
        return mode


@dataclass
class SandboxState:
    shops: dict[str, SandboxShop]
    faults_enabled: bool
    clock: Callable[[], datetime]
    notify_url: str | None = None
    notify_secret: str | None = None
    notify_transport: httpx.AsyncBaseTransport | None = None
    faults: Faults = field(default_factory=Faults)
    notifications: list[str] = field(default_factory=list)
    requests: int = 0

    def main_shop(self) -> SandboxShop:
        return self.shops[SANDBOX_SHOP_TOKEN]


class Problem(Exception):
    """An RFC 7807 problem answer, the error shape MyOnlineStore's newer endpoints use."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}

    def response(self) -> JSONResponse:
        body = {"type": "about:blank", "title": self.title, "detail": self.detail, "status": self.status}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def int_param(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    try:
        return default if raw in (None, "") else int(raw)
    except ValueError:
        raise Problem(400, "Bad Request", f"{name} must be an integer") from None


def find_order(shop: SandboxShop, raw_number: str) -> SandboxOrder:
    order = shop.orders.get(int(raw_number)) if raw_number.isdigit() else None
    if order is None:
        raise Problem(404, "Not Found", f"Order {raw_number[:40]} does not exist")
    return order
