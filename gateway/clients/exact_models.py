"""Typed Exact Online records the gateway reads (frozen dataclasses parsed at the boundary) and the $select lists.

Only the fields the gateway uses are read; a missing key field raises PermanentApiError. No HTTP here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.clients.errors import PermanentApiError

VENDOR = "Exact Online"


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise PermanentApiError(f"{VENDOR} answer lacks {key}", vendor=VENDOR)
        return ""
    return str(value).strip()


def _int(data: Mapping[str, Any], key: str, *, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise PermanentApiError(f"{VENDOR} answer lacks {key}", vendor=VENDOR)
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise PermanentApiError(f"{VENDOR} sent a non-numeric {key}", vendor=VENDOR) from e


def _decimal(data: Mapping[str, Any], key: str) -> Decimal | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation as e:
        raise PermanentApiError(f"{VENDOR} sent a non-numeric {key}", vendor=VENDOR) from e


@dataclass(frozen=True)
class ExactMe:
    user_id: str
    current_division: int
    full_name: str
    user_name: str
    email: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactMe:
        return cls(
            user_id=_text(data, "UserID"),
            current_division=_int(data, "CurrentDivision", required=True) or 0,
            full_name=_text(data, "FullName"),
            user_name=_text(data, "UserName"),
            email=_text(data, "Email"),
        )


@dataclass(frozen=True)
class ExactDivision:
    code: int
    description: str
    customer_name: str
    country: str
    vat_number: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactDivision:
        return cls(
            code=_int(data, "Code", required=True) or 0,
            description=_text(data, "Description"),
            customer_name=_text(data, "CustomerName"),
            country=_text(data, "Country"),
            vat_number=_text(data, "VATNumber"),
        )


@dataclass(frozen=True)
class ExactVatCode:
    """`percentage` is what Exact sends: a fraction (0.21 = 21 %); `percent` is the human number."""

    code: str  # trimmed: Exact pads codes with spaces ("2  ")
    description: str
    percentage: Decimal
    type: str  # B 0 % base only, E excluding, I including, N no VAT
    transaction_type: str  # S sales, P purchase, B both
    is_blocked: bool
    oss_country: str
    eu_sales_listing: str
    charged: bool

    @property
    def percent(self) -> Decimal:
        return (self.percentage * 100).normalize() + 0

    @property
    def is_sales(self) -> bool:
        return self.transaction_type in {"S", "B", ""}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactVatCode:
        return cls(
            code=_text(data, "Code", required=True),
            description=_text(data, "Description"),
            percentage=_decimal(data, "Percentage") or Decimal(0),
            type=_text(data, "Type"),
            transaction_type=_text(data, "VATTransactionType"),
            is_blocked=bool(data.get("IsBlocked")),
            oss_country=_text(data, "OssCountry").upper(),
            eu_sales_listing=_text(data, "EUSalesListing"),
            charged=bool(data.get("Charged")),
        )


@dataclass(frozen=True)
class ExactGLAccount:
    id: str
    code: str
    description: str
    type: int | None
    is_blocked: bool

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactGLAccount:
        return cls(
            id=_text(data, "ID", required=True),
            code=_text(data, "Code", required=True),
            description=_text(data, "Description"),
            type=_int(data, "Type"),
            is_blocked=bool(data.get("IsBlocked")),
        )


@dataclass(frozen=True)
class ExactJournal:
    """`currency` is the journal's default; when `allows_other_currencies` is False it is the only one it takes
    (Journals.AllowVariableCurrency). None: not known (a cached list from before these were read)."""

    code: str
    description: str
    type: int | None
    is_blocked: bool
    currency: str | None = None
    allows_other_currencies: bool | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactJournal:
        variable = data.get("AllowVariableCurrency")
        return cls(
            code=_text(data, "Code", required=True),
            description=_text(data, "Description"),
            type=_int(data, "Type"),
            is_blocked=bool(data.get("IsBlocked")),
            currency=_text(data, "Currency").upper() or None,
            allows_other_currencies=None if variable is None else bool(variable),
        )


@dataclass(frozen=True)
class ExactItemGroup:
    id: str
    code: str
    description: str
    gl_revenue: str
    is_default: bool

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactItemGroup:
        return cls(
            id=_text(data, "ID", required=True),
            code=_text(data, "Code"),
            description=_text(data, "Description"),
            gl_revenue=_text(data, "GLRevenue"),
            is_default=bool(data.get("IsDefault")),
        )


@dataclass(frozen=True)
class ExactItem:
    id: str
    code: str
    description: str
    gl_revenue: str
    sales_vat_code: str
    item_group: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactItem:
        return cls(
            id=_text(data, "ID", required=True),
            code=_text(data, "Code", required=True),
            description=_text(data, "Description"),
            gl_revenue=_text(data, "GLRevenue"),
            sales_vat_code=_text(data, "SalesVatCode"),
            item_group=_text(data, "ItemGroup"),
        )


@dataclass(frozen=True)
class ExactAccount:
    id: str
    code: str  # trimmed
    name: str
    email: str
    status: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactAccount:
        return cls(
            id=_text(data, "ID", required=True),
            code=_text(data, "Code"),
            name=_text(data, "Name"),
            email=_text(data, "Email"),
            status=_text(data, "Status"),
        )


@dataclass(frozen=True)
class ExactPaymentCondition:
    code: str
    description: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExactPaymentCondition:
        return cls(code=_text(data, "Code", required=True), description=_text(data, "Description"))


ME_FIELDS = ("UserID", "CurrentDivision", "FullName", "UserName", "Email")
DIVISION_FIELDS = ("Code", "Description", "CustomerName", "Country", "VATNumber")
VAT_FIELDS = (
    "Code",
    "Description",
    "Percentage",
    "Type",
    "VATTransactionType",
    "IsBlocked",
    "EUSalesListing",
    "Charged",
)
GL_FIELDS = ("ID", "Code", "Description", "Type", "IsBlocked")
JOURNAL_FIELDS = ("Code", "Description", "Type", "IsBlocked", "Currency", "AllowVariableCurrency")
ITEM_GROUP_FIELDS = ("ID", "Code", "Description", "GLRevenue", "IsDefault")
ITEM_FIELDS = ("ID", "Code", "Description", "GLRevenue", "SalesVatCode", "ItemGroup")
ACCOUNT_FIELDS = ("ID", "Code", "Name", "Email", "Status")
PAYMENT_CONDITION_FIELDS = ("Code", "Description")
