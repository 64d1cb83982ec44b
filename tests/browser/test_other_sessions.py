"""Two browsers logged in as one owner: changing the password on one logs the other out, with a notice."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import Live, shoot
from tests.support.pages import mailed_link

pytestmark = pytest.mark.browser

EMAIL = "twice@theepot.test"
OLD, NEW = "a long enough password", "another long password"


def test_a_password_change_logs_out_the_other_browser(browser: Any, live: Live) -> None:
    here = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    there = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    mine, theirs = here.new_page(), there.new_page()
    for page in (mine, theirs):
        page.set_default_timeout(15_000)
    mine.goto(live.url + "/signup")
    mine.get_by_label("E-mail address").fill(EMAIL)
    mine.get_by_label("Password").fill(OLD)
    mine.get_by_role("button", name="Create account").click()
    mine.wait_for_url(re.compile(r"/login$"))
    mine.goto(live.url + mailed_link(live.settings, "/welcome/"))  # the link in the welcome mail
    mine.get_by_role("button", name="Confirm and log in").click()
    mine.wait_for_url(re.compile(r"/setup$"))
    theirs.goto(live.url + "/login")
    theirs.get_by_label("E-mail address").fill(EMAIL)
    theirs.get_by_label("Password").fill(OLD)
    theirs.get_by_role("button", name="Log in").click()
    theirs.wait_for_url(re.compile(r"/setup$"))

    mine.goto(live.url + "/account")
    mine.locator("#f-current_password").fill(OLD)
    mine.locator("#f-new_password").fill(NEW)
    mine.locator("#f-confirm_password").fill(NEW)
    mine.get_by_role("button", name="Change password").click()
    mine.get_by_text("Your password is changed.").wait_for()

    theirs.reload()
    theirs.wait_for_url(re.compile(r"/login\?next="))
    theirs.get_by_text("You were logged out because the password was changed.").wait_for()
    shoot(theirs, "40-logged-out-by-password-change")
    mine.goto(live.url + "/account")
    assert mine.url.endswith("/account")  # the browser that changed it stays logged in
    here.close()
    there.close()
