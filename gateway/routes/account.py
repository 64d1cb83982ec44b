"""Account pages: landing, sign up, log in/out, forgotten password, account settings, language switch.

Every form page is one endpoint for GET and POST: CSRF first, parse, 400 with the values kept, 303 on success.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import forms, login_limits, passwords
from gateway.auth import current_account_id, end_session, login_session, logout_session
from gateway.csrf import verify_csrf
from gateway.i18n import LOCALES, N_, Message, request_locale, set_request_locale, translate
from gateway.mail import send_mail
from gateway.pages import client_address, flash, redirect, render, require_account, safe_next
from gateway.store import accounts
from gateway.store.integrations import create_integration, list_integrations
from gateway.store.sessions import end_account_sessions

logger = logging.getLogger(__name__)


async def home(request: Request) -> Response:
    """Logged in: the dashboard of the only integration, or the list; otherwise the landing page."""
    account_id = current_account_id(request)
    if account_id is None:
        return render(request, "account/landing.html")
    async with request.app.state.engine.connect() as conn:
        integrations = await list_integrations(conn, account_id=account_id)
    if len(integrations) == 1:
        only = integrations[0]
        name = "setup" if only.state == "setup" else "dashboard"
        return redirect(str(request.url_for(name, integration_id=only.id)))
    return redirect(str(request.url_for("integrations")))


async def signup(request: Request) -> Response:
    """The same answer whether or not the address has an account (no enumeration): the mail tells the owner."""
    values: dict[str, object] = {}
    errors: forms.Errors = {}
    if request.method == "POST":
        data = await verify_csrf(request)
        values, errors = forms.parse_signup(data)
        limit = request.app.state.limit_keys.signup(client_address(request))
        if not errors and await login_limits.reached(request.app.state.arq, limit):
            errors["email"] = N_("Too many requests from your address. Try again later.")
        if not errors:
            await login_limits.count(request.app.state.arq, (limit,))
            email = str(values["email"])
            await _sign_up(request, email, str(values["password"]))
            flash(request, N_("Almost done: open the link we sent to %(email)s to finish signing up.", email=email))
            return redirect(str(request.url_for("login")))
    return render(
        request,
        "account/signup.html",
        {"values": forms.public_values(values), "errors": errors},
        status_code=400 if errors else 200,
    )


async def _sign_up(request: Request, email: str, password: str) -> None:
    """A new address gets an unconfirmed account, a shop and the link that finishes signing up; an address still
    unconfirmed gets the new password and a new link (the older one dies); an owner's address gets a mail saying
    that someone tried, with the ways in. Nobody is logged in here."""
    state = request.app.state
    password_hash = await state.passwords.hash(password)
    locale = request_locale(request)
    async with state.engine.begin() as conn:
        account = await accounts.get_account_by_email(conn, email=email)
        if account is None:
            try:
                account = await accounts.create_account(
                    conn, email=email, password_hash=password_hash, locale=locale, confirmed=False
                )
            except accounts.EmailTaken:
                return  # a sign-up for the same address at the same moment: that one sends the mail
            await create_integration(conn, account_id=account.id, trial_days=state.settings.trial_days)
        elif not account.confirmed:
            await accounts.set_password_hash(conn, account_id=account.id, password_hash=password_hash)
            account = dataclasses.replace(account, password_hash=password_hash)
    if account.confirmed:
        await _send_account_exists(request, account)
    else:
        await _send_welcome(request, account, locale)


async def _send_welcome(request: Request, account: accounts.Account, locale: str) -> None:
    settings = request.app.state.settings
    token = passwords.make_signin_token(
        str(settings.secret_key), account_id=account.id, password_hash=account.password_hash
    )
    signin_url = f"{settings.public_url}/welcome/{token}"
    body = request.app.state.templates.get_template("mail/welcome.txt").render(
        _=lambda text, **p: translate(locale, text, **p),
        signin_url=signin_url,
        hours=passwords.SIGNIN_MAX_AGE // 3600,
        email=account.email,
    )
    subject = translate(locale, N_("Welcome to your Mijnwebwinkel → Exact Online link"))
    await send_mail(
        request.app.state.engine,
        settings,
        to=account.email,
        subject=subject,
        body=body,
        account_id=account.id,
        redact=(signin_url, token),
    )


async def _send_account_exists(request: Request, account: accounts.Account) -> None:
    settings = request.app.state.settings
    locale = account.locale if account.locale in LOCALES else request_locale(request)
    body = request.app.state.templates.get_template("mail/signup_exists.txt").render(
        _=lambda text, **p: translate(locale, text, **p),
        email=account.email,
        login_url=f"{settings.public_url}/login",
        forgot_url=f"{settings.public_url}/forgot",
    )
    subject = translate(locale, N_("You already have an account"))
    await send_mail(
        request.app.state.engine, settings, to=account.email, subject=subject, body=body, account_id=account.id
    )


async def welcome(request: Request) -> Response:
    """The link that finishes a sign-up: GET shows a button (mail scanners that open links confirm nothing), POST
    confirms the address, logs in and goes on to the set-up."""
    data = await verify_csrf(request) if request.method == "POST" else None
    claim = passwords.read_signin_token(str(request.app.state.settings.secret_key), request.path_params["token"])
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        account = await accounts.get_account(conn, account_id=claim[0]) if claim else None
    if (
        not claim
        or not account
        or account.confirmed
        or not passwords.reset_token_matches(claim[1], account.password_hash)
    ):
        return render(request, "account/welcome_invalid.html", status_code=400)
    if data is None:
        return render(request, "account/welcome.html", {"email": account.email})
    async with engine.begin() as conn:
        if not await accounts.confirm_email(conn, account_id=account.id):  # another tab used the link just now
            return render(request, "account/welcome_invalid.html", status_code=400)
        await login_session(request, conn, account.id, password_changed_at=account.password_changed_at)
        integrations = await list_integrations(conn, account_id=account.id)
    set_request_locale(request, account.locale)
    flash(request, N_("Welcome! Connect your shop in a few steps."))
    if not integrations:
        return redirect("/")
    return redirect(str(request.url_for("setup", integration_id=integrations[0].id)))


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    values: dict[str, object] = {"next": next_url}
    errors: forms.Errors = {}
    status = 200
    if request.method == "POST":
        data = await verify_csrf(request)
        parsed, errors = forms.parse_login(data)
        values.update(parsed, next=safe_next(str(data.get("next") or "")))
        if not errors:
            outcome = await _try_login(request, str(parsed["email"]), str(parsed["password"]))
            if isinstance(outcome, int):
                return redirect(str(values["next"]))
            errors["password"] = outcome[1]
            status = outcome[0]
        else:
            status = 400
    return render(
        request, "account/login.html", {"values": forms.public_values(values), "errors": errors}, status_code=status
    )


async def _try_login(request: Request, email: str, password: str) -> int | tuple[int, Message]:
    """The account id on success; (status, message) when refused. The hash runs off the event loop; failures count
    per account-and-address and per address (refusing), and per account (slowing down only)."""
    state = request.app.state
    redis = state.arq
    limits = state.limit_keys.login(email, client_address(request))
    everywhere = state.limit_keys.login_account(email)
    wait = await login_limits.blocked_for(redis, limits)
    if wait:
        minutes = max(1, round(wait / 60))
        return 429, N_("Too many failed attempts. Try again in %(minutes)s minutes.", minutes=minutes)
    if await login_limits.reached(redis, everywhere):
        await asyncio.sleep(login_limits.SLOWDOWN_SECONDS)
    async with state.engine.connect() as conn:
        account = await accounts.get_account_by_email(conn, email=email)
    if account is None:
        await state.passwords.spend_verify_time(password)
    elif await state.passwords.verify(account.password_hash, password) and account.confirmed:
        rehashed = await state.passwords.hash(password) if passwords.needs_rehash(account.password_hash) else None
        async with state.engine.begin() as conn:
            await accounts.record_login(conn, account_id=account.id, rehashed=rehashed)
            await login_session(request, conn, account.id, password_changed_at=account.password_changed_at)
        await login_limits.clear(redis, limits[0], everywhere)
        set_request_locale(request, account.locale)
        return account.id
    await login_limits.count(redis, (*limits, everywhere))
    logger.info("login refused for an e-mail address (wrong address or password)")
    return 400, N_("The e-mail address or the password is not right.")


async def logout(request: Request) -> Response:
    await verify_csrf(request)
    locale = request_locale(request)
    async with request.app.state.engine.begin() as conn:
        await end_session(request, conn)
    set_request_locale(request, locale)
    flash(request, N_("You are logged out."), "info")
    return redirect("/")


async def forgot(request: Request) -> Response:
    values: dict[str, object] = {}
    errors: forms.Errors = {}
    if request.method == "POST":
        data = await verify_csrf(request)
        values, errors = forms.parse_forgot(data)
        if not errors:
            limit = request.app.state.limit_keys.forgot(str(values["email"]), client_address(request))
            redis = request.app.state.arq
            if await login_limits.blocked_for(redis, limit):
                errors["email"] = N_("Too many requests from your address. Try again later.")
            else:
                await login_limits.count(redis, limit)
                await _send_reset_link(request, str(values["email"]))
                flash(
                    request,
                    N_("If an account uses this address, a link to choose a new password is on its way."),
                    "info",
                )
                return redirect(str(request.url_for("login")))
    return render(
        request, "account/forgot.html", {"values": values, "errors": errors}, status_code=400 if errors else 200
    )


async def _send_reset_link(request: Request, email: str) -> None:
    settings = request.app.state.settings
    async with request.app.state.engine.connect() as conn:
        account = await accounts.get_account_by_email(conn, email=email)
    if account is None:
        return  # same answer either way: the page never tells whether an address has an account
    token = passwords.make_reset_token(
        str(settings.secret_key), account_id=account.id, password_hash=account.password_hash
    )
    locale = account.locale if account.locale in LOCALES else request_locale(request)
    reset_url = f"{settings.public_url}/reset/{token}"
    body = request.app.state.templates.get_template("mail/reset.txt").render(
        _=lambda text, **p: translate(locale, text, **p), reset_url=reset_url, minutes=passwords.RESET_MAX_AGE // 60
    )
    subject = translate(locale, "Choose a new password")
    await send_mail(
        request.app.state.engine,
        settings,
        to=account.email,
        subject=subject,
        body=body,
        account_id=account.id,
        redact=(reset_url, token),
    )


async def reset(request: Request) -> Response:
    settings = request.app.state.settings
    data = await verify_csrf(request) if request.method == "POST" else None
    claim = passwords.read_reset_token(str(settings.secret_key), request.path_params["token"])
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        account = await accounts.get_account(conn, account_id=claim[0]) if claim else None
    if claim is None or account is None or not passwords.reset_token_matches(claim[1], account.password_hash):
        return render(request, "account/reset_invalid.html", status_code=400)
    errors: forms.Errors = {}
    if data is not None:
        values, errors = forms.parse_new_password(data)
        if not errors:
            new_hash = await request.app.state.passwords.hash(str(values["new_password"]))
            async with engine.begin() as conn:
                changed_at = await accounts.set_password_hash(conn, account_id=account.id, password_hash=new_hash)
                await accounts.confirm_email(conn, account_id=account.id)  # the reset link proved the mailbox
                await end_account_sessions(conn, account_id=account.id)
                await login_session(request, conn, account.id, password_changed_at=changed_at)
            await login_limits.clear(request.app.state.arq, request.app.state.limit_keys.login_account(account.email))
            set_request_locale(request, account.locale)
            flash(request, N_("Your new password is saved. You are logged in."))
            return redirect("/")
    return render(request, "account/reset.html", {"errors": errors}, status_code=400 if errors else 200)


ACCOUNT_ACTIONS = ("email", "password", "delete")
TOO_MANY_GUESSES = N_(
    "Too many wrong passwords. Try again in %(minutes)s minutes.", minutes=login_limits.WINDOW_SECONDS // 60
)


async def account_settings(request: Request) -> Response:
    """E-mail, password and deletion, as three small forms posting here with an `action` field."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        account = await require_account(request, conn)
    action = ""
    values: dict[str, Any] = {}
    errors: forms.Errors = {}
    if request.method == "POST":
        data = await verify_csrf(request)
        action = str(data.get("action") or "")
        if action not in ACCOUNT_ACTIONS:
            return redirect(str(request.url_for("account_settings")))
        values, errors = await _change_account(request, account, action, data)
        if not errors:
            if action == "delete":
                return redirect("/")
            return redirect(str(request.url_for("account_settings")))
    return render(
        request,
        "account/settings.html",
        {"account": account, "action": action, "values": forms.public_values(values), "errors": errors},
        status_code=(429 if errors.get("current_password") is TOO_MANY_GUESSES else 400) if errors else 200,
    )


async def _change_account(
    request: Request, account: accounts.Account, action: str, data: Any
) -> tuple[dict[str, Any], forms.Errors]:
    parse = {
        "email": forms.parse_change_email,
        "password": forms.parse_change_password,
        "delete": forms.parse_delete_account,
    }[action]
    values, errors = parse(data)
    if "current_password" not in errors:
        refusal = await _check_current_password(request, account, str(values.get("current_password", "")))
        if refusal is not None:
            errors["current_password"] = refusal
    if errors:
        return values, errors
    new_hash = await request.app.state.passwords.hash(str(values["new_password"])) if action == "password" else ""
    async with request.app.state.engine.begin() as conn:
        if action == "email":
            try:
                await accounts.set_email(conn, account_id=account.id, email=str(values["email"]))
            except accounts.EmailTaken:
                errors["email"] = N_("Another account uses this e-mail address.")
                return values, errors
            flash(request, N_("Your e-mail address is changed."))
        elif action == "password":
            changed_at = await accounts.set_password_hash(conn, account_id=account.id, password_hash=new_hash)
            await _renew_session(request, conn, account.id, changed_at)
        else:
            await accounts.delete_account(conn, account_id=account.id)
    if action == "password":
        flash(request, N_("Your password is changed."))
    elif action == "delete":
        logger.info("account %s deleted with its integrations and tokens", account.id)
        locale = request_locale(request)
        logout_session(request)
        set_request_locale(request, locale)
        flash(request, N_("Your account, its shops and all stored tokens are deleted."), "info")
    return values, errors


async def _check_current_password(request: Request, account: accounts.Account, password: str) -> Message | None:
    """None when right; a refusal otherwise. Wrong guesses count per account: a stolen session cannot guess on."""
    redis = request.app.state.arq
    limit = request.app.state.limit_keys.current_password(account.id)
    if await login_limits.reached(redis, limit):
        return TOO_MANY_GUESSES
    if await request.app.state.passwords.verify(account.password_hash, password):
        await login_limits.clear(redis, limit)
        return None
    await login_limits.count(redis, (limit,))
    return N_("This is not your current password.")


async def _renew_session(request: Request, conn: AsyncConnection, account_id: int, changed_at: datetime) -> None:
    """A fresh session with the new password's stamp: this browser stays logged in, every other one is logged out
    (their rows deleted, and their stamps no longer match)."""
    locale = request_locale(request)
    token = await login_session(request, conn, account_id, password_changed_at=changed_at)
    await end_account_sessions(conn, account_id=account_id, keep_token=token)
    set_request_locale(request, locale)


async def language(request: Request) -> Response:
    """The language switcher in every page's footer; remembered in the session and on the account."""
    data = await verify_csrf(request)
    chosen = str(data.get("lang") or "")
    if chosen in LOCALES:
        set_request_locale(request, chosen)
        account_id = current_account_id(request)
        if account_id is not None:
            async with request.app.state.engine.begin() as conn:
                await accounts.set_locale(conn, account_id=account_id, locale=chosen)
    return redirect(safe_next(str(data.get("next") or "")))


routes = [
    Route("/", home, name="home"),
    Route("/signup", signup, name="signup", methods=["GET", "POST"]),
    Route("/welcome/{token}", welcome, name="welcome", methods=["GET", "POST"]),
    Route("/login", login, name="login", methods=["GET", "POST"]),
    Route("/logout", logout, name="logout", methods=["POST"]),
    Route("/forgot", forgot, name="forgot", methods=["GET", "POST"]),
    Route("/reset/{token}", reset, name="reset", methods=["GET", "POST"]),
    Route("/account", account_settings, name="account_settings", methods=["GET", "POST"]),
    Route("/language", language, name="language", methods=["POST"]),
]
