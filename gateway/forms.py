"""Form parsing without a framework: a `Form` reads submitted fields through small typed validators and collects
`(values, errors)`; `parse_*` functions describe the account forms. Errors are `Message`s, translated when shown.

`values` holds what the page shows again: the cleaned value when valid, the submitted text when not. Nothing here
does I/O; checks that need the database (e-mail taken, password right) happen in the route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from gateway.i18n import N_, Message
from gateway.passwords import MAX_LENGTH as PASSWORD_MAX, MIN_LENGTH as PASSWORD_MIN

# Deliberately loose: one @, a dot in the domain, no spaces. The welcome mail proves the address.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EMAIL_MAX = 254
TEXT_MAX = 200

Errors = dict[str, Message]


class Form:
    """One submitted form. Each validator returns the cleaned value (or a neutral value) and records an error."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.values: dict[str, Any] = {}
        self.errors: Errors = {}

    @property
    def ok(self) -> bool:
        return not self.errors

    def raw(self, name: str) -> str:
        value = self._data.get(name)
        return value.strip() if isinstance(value, str) else ""

    def error(self, name: str, message: Message) -> None:
        self.errors.setdefault(name, message)

    def text(self, name: str, *, required: bool = True, max_length: int = TEXT_MAX) -> str:
        value = self.raw(name)
        self.values[name] = value
        if required and not value:
            self.error(name, N_("This field is required."))
        elif len(value) > max_length:
            self.error(name, N_("Use at most %(n)s characters.", n=max_length))
        return value

    def email(self, name: str = "email") -> str:
        value = self.text(name, max_length=EMAIL_MAX).lower()
        self.values[name] = value
        if value and name not in self.errors and not EMAIL_PATTERN.match(value):
            self.error(name, N_("Enter an e-mail address like name@example.com."))
        return value

    def password(self, name: str = "password", *, new: bool = False) -> str:
        """A password is never trimmed; `public_values` keeps it out of the page."""
        value = self._data.get(name)
        value = value if isinstance(value, str) else ""
        self.values[name] = value
        if not value:
            self.error(name, N_("This field is required."))
        elif len(value) > PASSWORD_MAX:
            self.error(name, N_("Use at most %(n)s characters.", n=PASSWORD_MAX))
        elif new and len(value) < PASSWORD_MIN:
            self.error(name, N_("Use at least %(n)s characters.", n=PASSWORD_MIN))
        return value

    def choice(self, name: str, choices: Iterable[str], *, required: bool = True) -> str:
        value = self.raw(name)
        self.values[name] = value
        if not value:
            if required:
                self.error(name, N_("Choose one of the options."))
        elif value not in set(choices):
            self.error(name, N_("Choose one of the options."))
        return value

    def checkbox(self, name: str) -> bool:
        value = self.raw(name) in {"on", "true", "1", "yes"}
        self.values[name] = value
        return value

    def integer(
        self, name: str, *, required: bool = True, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.raw(name)
        self.values[name] = value
        if not value:
            if required:
                self.error(name, N_("This field is required."))
            return None
        try:
            number = int(value)
        except ValueError:
            self.error(name, N_("Enter a whole number."))
            return None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            self.error(name, N_("Enter a number from %(low)s to %(high)s.", low=minimum, high=maximum))
            return None
        self.values[name] = number
        return number

    def date(
        self, name: str, *, required: bool = False, earliest: date | None = None, latest: date | None = None
    ) -> date | None:
        """An ISO date as sent by `<input type="date">` (yyyy-mm-dd)."""
        value = self.raw(name)
        self.values[name] = value
        if not value:
            if required:
                self.error(name, N_("This field is required."))
            return None
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            self.error(name, N_("Enter a date as yyyy-mm-dd."))
            return None
        if earliest and parsed < earliest:
            self.error(name, N_("Choose %(date)s or later.", date=earliest.isoformat()))
        elif latest and parsed > latest:
            self.error(name, N_("Choose %(date)s or earlier.", date=latest.isoformat()))
        return parsed

    def int_list(self, name: str, allowed: Iterable[int]) -> tuple[int, ...]:
        """Ticked checkboxes sharing one name; values outside `allowed` are an error, not silently dropped."""
        getlist = getattr(self._data, "getlist", None)
        raw = getlist(name) if getlist else ([self._data[name]] if name in self._data else [])
        allowed_set = set(allowed)
        chosen: list[int] = []
        for item in raw:
            try:
                number = int(str(item))
            except ValueError:
                number = None
            if number is None or number not in allowed_set:
                self.error(name, N_("Choose from the listed options."))
                continue
            if number not in chosen:
                chosen.append(number)
        self.values[name] = chosen
        return tuple(sorted(chosen))


def parse_signup(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    form.email()
    form.password(new=True)
    return form.values, form.errors


def parse_login(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    form.email()
    form.password()
    return form.values, form.errors


def parse_forgot(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    form.email()
    return form.values, form.errors


def parse_new_password(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    """New password twice (reset page and account page)."""
    form = Form(data)
    password = form.password("new_password", new=True)
    confirm = form.password("confirm_password")
    if password and confirm and password != confirm and "new_password" not in form.errors:
        form.error("confirm_password", N_("The two passwords are not the same."))
    return form.values, form.errors


def parse_change_email(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    form.email()
    form.password("current_password")
    return form.values, form.errors


def parse_change_password(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    values, errors = parse_new_password(data)
    form = Form(data)
    form.password("current_password")
    return {**values, **form.values}, {**form.errors, **errors}


def parse_delete_account(data: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    form.password("current_password")
    if not form.checkbox("confirm"):
        form.error("confirm", N_("Tick the box to confirm."))
    return form.values, form.errors


def public_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without passwords, for re-rendering a page."""
    return {k: v for k, v in values.items() if "password" not in k}
