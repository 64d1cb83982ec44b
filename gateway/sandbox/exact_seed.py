"""Seed data for the sandbox Exact Online: Dutch administrations as an accountant would set them up.

Ids are stable (uuid5 of division and code) so tests and the demo can refer to them. Codes keep Exact's padding
(VAT codes to 3 characters, account codes to 18).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NAMESPACE = uuid.UUID("6f1d3c52-7d0e-4b8e-9a43-3f7c1a2b9e10")
USER_ID = "5d3a2b1c-0000-4000-8000-00000000e1a5"
CREATED = dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)


def stable_id(division: int, kind: str, code: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{division}:{kind}:{code}"))


@dataclass(frozen=True)
class DivisionSeed:
    code: int
    description: str
    country: str = "NL"
    vat_number: str = ""
    oss: bool = True  # the OneStopShop feature set: VATCodes carry OssCountry
    direct_invoices: bool = False  # Wholesale & Distribution / Manufacturing edition: Type 8023/8024 allowed
    extra: dict[str, Any] = field(default_factory=dict)


DIVISIONS = (
    DivisionSeed(123456, "Demo Webwinkel BV", vat_number="NL001234567B01"),
    DivisionSeed(234567, "Demo Groothandel BV", vat_number="NL009876543B01", direct_invoices=True),
    DivisionSeed(345678, "Oude Administratie", oss=False),
)

# code, description, percentage (fraction), type, transaction type, EU listing, charged, blocked, OSS country
_VAT = (
    ("0", "0% BTW", "0", "B", "S", "N", False, False, ""),
    ("1", "BTW verkopen laag 9%", "0.09", "E", "S", "N", False, False, ""),
    ("2", "BTW verkopen hoog 21%", "0.21", "E", "S", "N", False, False, ""),
    ("3", "BTW verkopen hoog 21% incl.", "0.21", "I", "S", "N", False, False, ""),
    ("4", "Verkopen verlegd binnen de EU (ICP goederen)", "0", "B", "S", "L", True, False, ""),
    ("5", "Verlegde BTW binnenland", "0", "B", "S", "N", True, False, ""),
    ("6", "Export buiten de EU", "0", "B", "S", "N", False, False, ""),
    ("7", "BTW hoog 19% (oud)", "0.19", "E", "S", "N", False, True, ""),
    ("11", "BTW inkopen hoog 21%", "0.21", "E", "P", "N", False, False, ""),
    ("12", "BTW inkopen laag 9%", "0.09", "E", "P", "N", False, False, ""),
    ("D1", "OSS Duitsland 19%", "0.19", "E", "S", "N", False, False, "DE"),
    ("D2", "OSS Duitsland 7%", "0.07", "E", "S", "N", False, False, "DE"),
    ("B1", "OSS België 21%", "0.21", "E", "S", "N", False, False, "BE"),
    ("B2", "OSS België 6%", "0.06", "E", "S", "N", False, False, "BE"),
    ("F1", "OSS Frankrijk 20%", "0.20", "E", "S", "N", False, False, "FR"),
    ("F2", "OSS Frankrijk 5,5%", "0.055", "E", "S", "N", False, False, "FR"),
    ("A1", "OSS Oostenrijk 20%", "0.20", "E", "S", "N", False, False, "AT"),
    ("I1", "OSS Italië 22%", "0.22", "E", "S", "N", False, False, "IT"),
    ("E1", "OSS Spanje 21%", "0.21", "E", "S", "N", False, False, "ES"),
)
# code, description, type (110 revenue, 20 receivable, 24 VAT, 111 cost of goods), blocked
_GL = (
    ("1300", "Debiteuren", 20, False),
    ("1500", "Af te dragen BTW", 24, False),
    ("7000", "Inkoopwaarde van de omzet", 111, False),
    ("8000", "Omzet hoog tarief", 110, False),
    ("8010", "Omzet laag tarief", 110, False),
    ("8020", "Omzet 0% / export buiten de EU", 110, False),
    ("8030", "Omzet intracommunautaire leveringen", 110, False),
    ("8040", "Omzet OSS (Unieregeling)", 110, False),
    ("8050", "Omzet verzendkosten", 110, False),
    ("8060", "Kortingen op verkopen", 110, False),
    ("8099", "Omzet oud (geblokkeerd)", 110, True),
)
# code, description, type (20 sales, 10 cash, 12 bank, 22 purchase, 90 general)
_JOURNALS = (
    ("10", "Kas", 10),
    ("20", "Bank", 12),
    ("60", "Inkoopboek", 22),
    ("70", "Verkoopboek", 20),
    ("71", "Verkoopboek webwinkel", 20),
    ("90", "Memoriaal", 90),
)
_PAYMENT_CONDITIONS = (("00", "Direct"), ("14", "Binnen 14 dagen"), ("30", "Binnen 30 dagen"))
_ITEM_GROUPS = (("001", "Handelsgoederen", "8000", True), ("002", "Diensten", "8010", False))
# code, description, group, sales VAT code
_ITEMS = (
    ("VERZEND", "Verzendkosten", "002", "2"),
    ("TSHIRT-001", "T-shirt biologisch katoen", "001", "2"),
    ("BOEK-042", "Kookboek Hollandse pot", "001", "1"),
)
_ACCOUNTS = (("1", "Jan Jansen", "jan@example.nl", "NL"), ("2", "Bakkerij De Korenaar BV", "info@korenaar.nl", "NL"))


def seed_division(seed: DivisionSeed) -> dict[str, list[dict[str, Any]]]:
    """Fresh rows for every entity of one division."""
    code = seed.code
    gl = {c: stable_id(code, "gl", c) for c, *_ in _GL}
    groups = {c: stable_id(code, "itemgroup", c) for c, *_ in _ITEM_GROUPS}
    return {
        "VATCodes": [_vat(code, row, seed.oss) for row in _VAT],
        "GLAccounts": [
            {"ID": gl[c], "Code": c, "Description": d, "Type": t, "IsBlocked": b, "Division": code}
            for c, d, t, b in _GL
        ],
        "Journals": [
            {
                "ID": stable_id(code, "journal", c),
                "Code": c,
                "Description": d,
                "Type": t,
                "IsBlocked": False,
                "Currency": "EUR",
                "AllowVariableCurrency": t == 20,  # sales journals take other currencies; tests may switch it off
            }
            for c, d, t in _JOURNALS
        ],
        "PaymentConditions": [
            {"ID": stable_id(code, "paycond", c), "Code": c, "Description": d} for c, d in _PAYMENT_CONDITIONS
        ],
        "ItemGroups": [
            {"ID": groups[c], "Code": c, "Description": d, "GLRevenue": gl[g], "GLRevenueCode": g, "IsDefault": i}
            for c, d, g, i in _ITEM_GROUPS
        ],
        "Items": [_item(code, row, groups, gl) for row in _ITEMS],
        "Accounts": [
            {
                "ID": stable_id(code, "account", c),
                "Code": f"{c:>18}",
                "Name": n,
                "Email": e,
                "Country": country,
                "Status": "C",
                "Created": CREATED,
            }
            for c, n, e, country in _ACCOUNTS
        ],
        "SalesEntries": [],
        "SalesInvoices": [],
        "PrintedSalesInvoices": [],
        "SalesOrders": [],
    }


def _vat(division: int, row: tuple[Any, ...], oss: bool) -> dict[str, Any]:
    code, description, percentage, type_, transaction, listing, charged, blocked, oss_country = row
    data = {
        "ID": stable_id(division, "vat", code),
        "Code": f"{code:<3}",
        "Description": description,
        "Percentage": Decimal(percentage),
        "Type": type_,
        "VATTransactionType": transaction,
        "EUSalesListing": listing,
        "Charged": charged,
        "IsBlocked": blocked,
    }
    if oss:
        data["OssCountry"] = oss_country or None
    return data


def _item(division: int, row: tuple[str, ...], groups: dict[str, str], gl: dict[str, str]) -> dict[str, Any]:
    code, description, group, vat = row
    return {
        "ID": stable_id(division, "item", code),
        "Code": code,
        "Description": description,
        "ItemGroup": groups[group],
        "GLRevenue": None,
        "SalesVatCode": f"{vat:<3}",
        "IsSalesItem": True,
        "Created": CREATED,
    }
