"""The items step picks shipping, costs and discount items from the administration's list, or creates them in Exact
on request; costs and discounts may be "not used". Pre-filled: an item that reads like the purpose, else "create"."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.setup_forms import CREATE_ITEM
from gateway.store.integrations import get_integration_or_raise
from tests.support.pages import connect_exact, connect_shop, sign_up, submit


def selected(page: str, name: str) -> str:
    field = page.split(f'name="{name}"')[1].split("</select>")[0]
    found = re.search(r'value="([^"]*)" selected', field)
    return found.group(1) if found else ""


async def test_items_are_picked_from_the_list_or_created_on_request(wizard: TestClient, engine: AsyncEngine) -> None:
    shop = sign_up(wizard)
    connect_shop(wizard, shop)
    connect_exact(wizard, shop)
    base = f"/integrations/{shop}/setup"
    submit(wizard, f"{base}/administration", {"division": "123456"})
    invoice = {"insertion_type": "sales_invoice", "journal_code": "70", "invoice_status": "draft"}
    assert submit(wizard, f"{base}/booking", invoice).status_code == 303
    page = wizard.get(f"{base}/items").text
    assert "VERZEND · Verzendkosten" in page  # the administration's items, to pick from
    assert selected(page, "shipping_item") == "VERZEND"  # it reads like shipping
    assert selected(page, "costs_item") == CREATE_ITEM
    assert selected(page, "discount_item") == CREATE_ITEM
    assert "Not used: my orders never have these lines" in page

    answers = {"shipping_item": "VERZEND", "costs_item": "", "discount_item": CREATE_ITEM}
    response = submit(wizard, f"{base}/items", answers)
    assert response.status_code == 303, response.text
    async with engine.connect() as conn:
        settings = (await get_integration_or_raise(conn, integration_id=shop)).settings
    assert (settings.shipping_item, settings.costs_item, settings.discount_item) == ("VERZEND", "", "KORTING")
    again = wizard.get(f"{base}/items").text
    assert "KORTING · Discount" in again  # created in the sandbox Exact, listed from now on
    assert selected(again, "discount_item") == "KORTING"
    assert selected(again, "costs_item") == ""  # not used stays not used
