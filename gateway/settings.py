"""Settings: one frozen object built from the environment, once, at start-up.

Nothing here reads the environment at import. `load_settings(environ)` casts and validates every variable and raises
`SettingsError` naming each bad one. Dev mode (GATEWAY_ENV unset or "dev") needs no variables at all: it uses a
SQLite file and secrets generated once under `./var/`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet
from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings, Secret

EXACT_COUNTRIES: tuple[str, ...] = ("nl", "be", "de", "uk", "us", "es", "fr")
EXACT_DEFAULT_HOSTS: dict[str, str] = {
    "nl": "https://start.exactonline.nl",
    "be": "https://start.exactonline.be",
    "de": "https://start.exactonline.de",
    "uk": "https://start.exactonline.co.uk",
    "us": "https://start.exactonline.com",
    "es": "https://start.exactonline.es",
    "fr": "https://start.exactonline.fr",
}
MWW_DEFAULT_BASE_URL = "https://api.myonlinestore.com/v1"
ENVIRONMENTS = ("dev", "test", "production")
PLACEHOLDERS = {"", "changethis", "changeme", "secret", "dev"}
SERVICE_LEVELS = ("basic", "pro", "premium")


class SettingsError(ValueError):
    """Raised at start-up when configuration is missing or unsafe; the message names every variable."""


@dataclass(frozen=True)
class Settings:
    """Every setting the gateway reads. Tests build this directly."""

    env: str = "dev"
    database_url: str = "sqlite+aiosqlite:///./var/gateway.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: Secret = Secret("")
    encryption_keys: tuple[Secret, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: str = "console"
    mww_base_url: str = MWW_DEFAULT_BASE_URL
    mww_partner_token: Secret = Secret("")
    exact_hosts: Mapping[str, str] = field(default_factory=lambda: dict(EXACT_DEFAULT_HOSTS))
    exact_client_id: str = ""
    exact_client_secret: Secret = Secret("")
    exact_minutely_limit: int = 60
    exact_daily_limit: int = 5000
    poll_interval_seconds: int = 60
    basic_poll_interval_seconds: int = 7200
    retention_days: int = 400  # notices and attempts of settled orders older than this are deleted
    job_keep_result_seconds: int = 0
    metrics_token: Secret = Secret("")
    worker_metrics_port: int = 0
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - a port of its own, inside the container or pod network
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: Secret = Secret("")
    smtp_from: str = "gateway@localhost"
    support_email: str = ""
    support_phone: str = ""
    trial_days: int = 30
    prices: Mapping[str, str] = field(
        default_factory=lambda: {"basic": "9", "pro": "15", "premium": "25"}  # euros a month
    )
    sandbox_enabled: bool = False
    sandbox_faults: bool = False
    webhook_max_body_bytes: int = 64 * 1024
    form_max_body_bytes: int = 1024 * 1024

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"


def load_settings(environ: Mapping[str, str] | None = None, *, var_dir: Path | None = None) -> Settings:
    """Build Settings from `environ` (default: the process environment); raise SettingsError on bad values."""
    environ = os.environ if environ is None else environ
    config = Config(environ=dict(environ))
    errors: list[str] = []
    env = config("GATEWAY_ENV", default="dev").strip().lower()
    if env not in ENVIRONMENTS:
        raise SettingsError(f"GATEWAY_ENV must be one of {', '.join(ENVIRONMENTS)} (got {env!r})")

    def integer(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        raw = config(name, default=str(default))
        try:
            value = int(raw)
        except ValueError:
            errors.append(f"{name} must be an integer (got {raw!r})")
            return default
        if value < minimum:
            errors.append(f"{name} must be >= {minimum} (got {value})")
        if maximum is not None and value > maximum:
            errors.append(f"{name} must be <= {maximum} (got {value})")
        return value

    def flag(name: str, default: bool) -> bool:
        raw = config(name, default="true" if default else "false").strip().lower()
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off", ""}:
            return False
        errors.append(f"{name} must be true or false (got {raw!r})")
        return default

    dev_secrets = _dev_secrets(var_dir or Path("var")) if env == "dev" else {}
    secret_key = config("SECRET_KEY", default=dev_secrets.get("secret_key", ""))
    keys_raw = config("ENCRYPTION_KEYS", default=dev_secrets.get("encryption_key", ""))
    encryption_keys = tuple(Secret(k) for k in CommaSeparatedStrings(keys_raw))
    database_url = config("DATABASE_URL", default="sqlite+aiosqlite:///./var/gateway.db")
    if env == "production":
        errors.extend(_production_problems(secret_key, keys_raw, var_dir or Path("var")))
        if "DATABASE_URL" not in environ:
            errors.append("DATABASE_URL must be set in production")
        if "PUBLIC_URL" not in environ:
            errors.append("PUBLIC_URL must be set in production (used for OAuth redirects and e-mail links)")
    elif not secret_key:
        errors.append("SECRET_KEY must be set (GATEWAY_ENV=test has no generated dev secrets)")
    for index, key in enumerate(encryption_keys):
        if not _is_fernet_key(str(key)):
            errors.append(f"ENCRYPTION_KEYS entry {index + 1} is not a Fernet key (32 url-safe base64 bytes)")
    if not encryption_keys:
        errors.append("ENCRYPTION_KEYS must hold at least one Fernet key")
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        errors.append("DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    log_format = config("LOG_FORMAT", default="json" if env == "production" else "console")
    if log_format not in {"json", "console"}:
        errors.append(f"LOG_FORMAT must be json or console (got {log_format!r})")
    exact_hosts = {
        cc: config(f"EXACT_HOST_{cc.upper()}", default=url).rstrip("/") for cc, url in EXACT_DEFAULT_HOSTS.items()
    }
    prices = {level: config(f"PRICE_{level.upper()}", default=Settings().prices[level]) for level in SERVICE_LEVELS}
    settings = Settings(
        env=env,
        database_url=database_url,
        redis_url=config("REDIS_URL", default="redis://127.0.0.1:6379/0"),
        secret_key=Secret(secret_key),
        encryption_keys=encryption_keys,
        public_url=config("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/"),
        host=config("HOST", default="127.0.0.1"),
        port=integer("PORT", 8000, 1),
        log_level=config("LOG_LEVEL", default="INFO").upper(),
        log_format=log_format,
        mww_base_url=config("MWW_BASE_URL", default=MWW_DEFAULT_BASE_URL).rstrip("/"),
        mww_partner_token=config("MWW_PARTNER_TOKEN", cast=Secret, default=""),
        exact_hosts=exact_hosts,
        exact_client_id=config("EXACT_CLIENT_ID", default=""),
        exact_client_secret=config("EXACT_CLIENT_SECRET", cast=Secret, default=""),
        exact_minutely_limit=integer("EXACT_MINUTELY_LIMIT", 60, 1),
        exact_daily_limit=integer("EXACT_DAILY_LIMIT", 5000, 1),
        poll_interval_seconds=integer("POLL_INTERVAL_SECONDS", 60, 1),
        basic_poll_interval_seconds=integer("BASIC_POLL_INTERVAL_SECONDS", 7200, 1),
        retention_days=integer("RETENTION_DAYS", 400, 1),
        metrics_token=config("METRICS_TOKEN", cast=Secret, default=""),
        worker_metrics_port=integer("WORKER_METRICS_PORT", 0, 0, 65535),
        worker_metrics_host=config("WORKER_METRICS_HOST", default="0.0.0.0"),  # noqa: S104
        smtp_host=config("SMTP_HOST", default=""),
        smtp_port=integer("SMTP_PORT", 587, 1),
        smtp_user=config("SMTP_USER", default=""),
        smtp_password=config("SMTP_PASSWORD", cast=Secret, default=""),
        smtp_from=config("SMTP_FROM", default="gateway@localhost"),
        support_email=config("SUPPORT_EMAIL", default=""),
        support_phone=config("SUPPORT_PHONE", default=""),
        trial_days=integer("TRIAL_DAYS", 30, 0),
        prices=prices,
        sandbox_enabled=flag("SANDBOX", env == "dev"),
        sandbox_faults=flag("SANDBOX_FAULTS", False),
    )
    if env == "production" and settings.sandbox_enabled:
        errors.append("SANDBOX must be off in production")
    if errors:
        raise SettingsError("invalid configuration: " + "; ".join(errors))
    return settings


def _is_fernet_key(key: str) -> bool:
    try:
        Fernet(key.encode())
    except ValueError:
        return False
    return True


def _production_problems(secret_key: str, keys_raw: str, var_dir: Path) -> list[str]:
    problems = []
    if secret_key.strip().lower() in PLACEHOLDERS or len(secret_key) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters in production")
    if keys_raw.strip().lower() in PLACEHOLDERS:
        problems.append("ENCRYPTION_KEYS must be set in production")
    dev = _read_dev_secrets(var_dir)
    if dev and secret_key == dev.get("secret_key"):
        problems.append("SECRET_KEY is the generated dev secret; production refuses it")
    if dev and dev.get("encryption_key") in list(CommaSeparatedStrings(keys_raw)):
        problems.append("ENCRYPTION_KEYS contains the generated dev key; production refuses it")
    return problems


def _read_dev_secrets(var_dir: Path) -> dict[str, str]:
    path = var_dir / "dev-secrets.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def _dev_secrets(var_dir: Path) -> dict[str, str]:
    """Generate the dev secrets once and keep them under var/ so sessions and tokens survive restarts."""
    existing = _read_dev_secrets(var_dir)
    if existing:
        return existing
    var_dir.mkdir(parents=True, exist_ok=True)
    values = {"secret_key": secrets.token_urlsafe(48), "encryption_key": Fernet.generate_key().decode()}
    path = var_dir / "dev-secrets.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values
