"""The browser tests' helpers: where Chromium is and how it starts, what a live gateway offers a test, and the
screenshot that checks a page on the way (labels, one h1, a language, nothing wider than a phone)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.settings import Settings
from tests.support.environment import ROOT

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}  # the narrowest phone the pages are made for


@dataclass(frozen=True)
class Live:
    """A gateway, its worker and both sandboxes served on free ports (the `live` fixture)."""

    url: str
    mww_url: str
    exact_url: str
    settings: Settings


# Every visible form control must have a name a screen reader can read: a <label>, aria-label or aria-labelledby.
UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
# Tabs a phone cannot see without scrolling the tab bar sideways (every tab must be reachable at a glance).
HIDDEN_TABS = """() => Array.from(document.querySelectorAll('.tabs a')).filter(a => {
  const box = a.getBoundingClientRect(); return box.right > window.innerWidth + 0.5 || box.left < -0.5;
}).map(a => a.textContent.trim())"""


def shoot(page: Any, name: str) -> None:
    """Full-page screenshots at desktop and phone width, checking on the way that every control is labelled,
    that the page has one h1 and a lang, and that nothing sticks out sideways on a phone."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state()
    assert page.evaluate(UNLABELLED) == [], f"unlabelled controls on {page.url}"
    assert page.locator("h1").count() >= 1, f"no h1 on {page.url}"
    assert page.locator("html").get_attribute("lang") in ("nl", "en"), page.url
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        if label == "phone":
            assert page.evaluate(OVERFLOW) <= 0, f"{page.url} is wider than a phone"
            assert page.evaluate(HIDDEN_TABS) == [], f"tabs out of sight on a phone at {page.url}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
