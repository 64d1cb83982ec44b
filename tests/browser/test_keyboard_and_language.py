"""Keyboard-only use and the Dutch pages in a real browser: skip link, signing up without a mouse, the switch."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import Live, shoot
from tests.support.pages import mailed_link

pytestmark = pytest.mark.browser


def focused(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))


def tab_to(page: Any, element_id: str, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page) == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def test_a_dutch_owner_signs_up_with_the_keyboard_only(browser: Any, live: Live) -> None:
    context = browser.new_context(locale="nl-NL", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live.url + "/")
    assert page.locator("html").get_attribute("lang") == "nl"
    page.keyboard.press("Tab")
    assert focused(page) == "Naar de inhoud"  # the skip link comes first
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "content"
    shoot(page, "30-landing-dutch")
    page.goto(live.url + "/signup")  # the e-mail field has autofocus
    assert focused(page) == "f-email"
    page.keyboard.type("toetsenbord@theepot.test")
    tab_to(page, "f-password")
    page.keyboard.type("kort")
    page.keyboard.press("Enter")
    page.get_by_text("Er is 1 probleem").wait_for()
    assert page.locator("#f-password").get_attribute("aria-invalid") == "true"
    assert page.locator("#f-email").input_value() == "toetsenbord@theepot.test"  # kept after the error
    shoot(page, "31-signup-error-dutch")
    page.locator("#f-password").focus()
    page.keyboard.type("een lang genoeg wachtwoord")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/login$"))
    page.get_by_text("Bijna klaar: open de link").wait_for()
    page.goto(live.url + mailed_link(live.settings, "/welcome/"))  # the link in the welcome mail
    tab_to(page, "Bevestigen en inloggen")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/integrations/\d+/setup$"))
    assert "Koppel je winkel in een paar stappen" in page.content()
    shoot(page, "32-setup-overview-dutch")

    page.get_by_role("button", name="English").click()
    page.wait_for_url(re.compile(r"/setup$"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert "10 steps to go" in page.content()
    context.close()
