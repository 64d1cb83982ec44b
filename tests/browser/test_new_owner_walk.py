"""A new shop owner in a real browser: sign up, walk the whole wizard against the sandboxes, switch on, see an order
booked in the history, make one fail, retry it. Every page is photographed at desktop and phone width."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.support.browser import Live, shoot
from tests.support.pages import mailed_link

pytestmark = pytest.mark.browser
EMAIL = "new.owner@theepot.test"
PASSWORD = "thee met koekjes 2026"


def wait_for_state(page: Any, number: str, state: str, *, timeout: float = 30.0) -> None:
    """Reload the history until order `number` shows `state` (the worker books in the background)."""
    deadline = time.monotonic() + timeout
    row = page.locator("tbody tr").filter(has=page.get_by_role("link", name=number, exact=True))
    while True:
        page.wait_for_load_state()
        if row.count() and state in row.locator(".pill").first.inner_text():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"order {number} did not become {state!r} on {page.url}")
        time.sleep(0.5)
        page.reload()


def sign_up(page: Any, live: Live) -> None:
    page.goto(live.url + "/")
    shoot(page, "01-landing")
    page.get_by_role("link", name="Start your free trial").click()
    shoot(page, "02-signup")
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.get_by_text("Almost done: open the link we sent to").wait_for()
    page.goto(live.url + mailed_link(live.settings, "/welcome/"))  # the link in the welcome mail
    shoot(page, "02b-finish-signing-up")
    page.get_by_role("button", name="Confirm and log in").click()
    page.wait_for_url(re.compile(r"/integrations/\d+/setup$"))
    shoot(page, "03-setup-overview")


def connect_both(page: Any) -> None:
    page.get_by_role("link", name=re.compile("^Continue: Connect Mijnwebwinkel")).click()
    shoot(page, "04-setup-shop")
    token = page.locator(".token-box").inner_text().strip()
    page.get_by_label("Shop token").fill(token)
    page.get_by_role("button", name="Check and connect").click()
    page.wait_for_url(re.compile(r"/setup/exact$"))
    shoot(page, "05-setup-exact")
    page.get_by_role("link", name="Connect Exact Online").click()
    shoot(page, "06-exact-country")
    page.get_by_role("button", name="Go to Exact Online").click()
    page.get_by_role("button", name="Approve").click()  # the sandbox Exact's consent page
    page.wait_for_url(re.compile(r"/integrations/\d+/setup$"))
    assert "8 steps to go" in page.content()


def configure(page: Any) -> None:
    page.get_by_role("link", name=re.compile("^Continue: Order statuses")).click()
    page.locator('input[name="statuses"][value="2"]').check()
    page.locator('input[name="statuses"][value="3"]').check()
    shoot(page, "07-setup-statuses")
    page.get_by_role("button", name="Save and continue").click()
    shoot(page, "08-setup-export")
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_label("Administration").select_option("123456")
    shoot(page, "09-setup-administration")
    page.get_by_role("button", name="Save and continue").click()
    for select in page.locator('select[name^="vat_"]').all():
        if not select.input_value():
            select.select_option("0")
    for select in page.locator('select[name^="gl_"]').all():
        select.select_option("8000")
    shoot(page, "10-setup-vat")
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_label("Sales journal").select_option("70")
    shoot(page, "11-setup-booking")
    page.get_by_role("button", name="Save and continue").click()
    shoot(page, "12-setup-items")
    page.get_by_role("button", name="Save and continue").click()
    shoot(page, "13-setup-service")
    page.get_by_role("button", name="Save and continue").click()
    page.wait_for_url(re.compile(r"/setup/review$"))


def test_a_new_owner_sets_up_books_and_retries_an_order(browser: Any, live: Live) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_up(page, live)
    connect_both(page)
    configure(page)

    page.get_by_role("button", name="Test with one order").click()
    page.get_by_text("would be booked as Sales entry").wait_for()
    shoot(page, "14-setup-review-test")
    page.get_by_role("button", name="Switch on").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert "Booking is on" in page.content()
    shoot(page, "15-dashboard")
    dashboard = page.url

    # Let the sandbox shop push its status changes to the gateway's webhook address.
    page.get_by_role("link", name="Connections").click()
    shoot(page, "16-connections")
    page.get_by_role("button", name="Create a new webhook address").click()
    boxes = page.locator(".token-box").all_inner_texts()
    httpx.post(f"{live.mww_url}/sandbox/notify", json={"url": boxes[0].strip(), "secret": boxes[1].strip()})

    created = httpx.post(f"{live.mww_url}/sandbox/orders", json={"template": "domestic", "status": 2}).json()
    booked_number = str(created["order"]["number"])
    history = dashboard.replace("/dashboard", "/history")
    page.goto(history)
    wait_for_state(page, booked_number, "Booked")
    shoot(page, "17-history-booked")

    # Exact refuses the next call: the next order fails with Exact's answer, then a retry books it.
    httpx.post(f"{live.exact_url}/_sandbox/faults", json={"fail_next": 1, "fail_status": 400})
    failing = httpx.post(f"{live.mww_url}/sandbox/orders", json={"template": "domestic", "status": 3}).json()
    failing_number = str(failing["order"]["number"])
    wait_for_state(page, failing_number, "Failed")
    shoot(page, "18-history-failed")
    page.get_by_role("link", name=failing_number, exact=True).click()
    assert "What went wrong:" in page.content()
    shoot(page, "19-order-failed")
    page.get_by_role("button", name="Retry").click()
    page.get_by_text("The order is queued to be booked again.").wait_for()
    page.goto(history)
    wait_for_state(page, failing_number, "Booked")
    page.get_by_role("link", name=failing_number, exact=True).click()
    shoot(page, "20-order-booked-after-retry")

    for name, link in (("21-plan", "Plan"), ("22-support", "Support"), ("23-overview-after", "Overview")):
        page.get_by_role("link", name=link, exact=True).click()
        shoot(page, name)
    page.get_by_role("link", name="Account").click()
    shoot(page, "24-account")
    page.get_by_role("button", name="Log out").click()
    page.goto(live.url + "/login")
    shoot(page, "25-login")
    page.goto(live.url + "/sandbox/outbox")
    assert EMAIL in page.content()
    shoot(page, "26-sandbox-outbox")
    context.close()
