"""Settings: one frozen object built from the environment, once, at start-up.

Nothing here reads the environment at import. `load_settings(environ)` casts and validates every variable and raises
`SettingsError` naming each bad one. Dev mode (GATEWAY_ENV unset or "dev") needs no variables at all: it uses a
SQLite file and secrets generated once under `./var/`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

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
MIN_SECRET_BITS = 128  # estimated entropy a production secret must hold (estimated_entropy_bits)
DEV_SECRETS_FILE = "dev-secrets.json"
# Generated dev secrets carry a marker, so production recognises them wherever they were copied to.
DEV_SECRET_MARKER = "gateway-dev-secret-"  # noqa: S105 - a marker, not a secret
DEV_FERNET_MARKER = b"gw-dev-key:"  # the first bytes of a generated dev Fernet key (21 random bytes follow)


class SettingsError(ValueError):
    """Raised at start-up when configuration is missing or unsafe; `problems` holds one line per bad variable."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


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
    # Proxies whose X-Forwarded-For/-Proto are believed (addresses or networks); none by default (docs/security.md).
    forwarded_allow_ips: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # served besides PUBLIC_URL's host (production only checks Host)
    allow_http_public_url: bool = False  # production on a private network without TLS, by explicit choice
    password_hash_concurrency: int = 2  # argon2 hashes at once in the web process (each ~64 MiB, ~0.25 s CPU)
    outbox_retention_days: int = 30  # mail older than this is deleted from the outbox

    @property
    def public_host(self) -> str:
        """PUBLIC_URL's host name (no port): the Host the gateway serves in production."""
        return urlsplit(self.public_url).hostname or ""

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
        mww_partner_token=Secret(config("MWW_PARTNER_TOKEN", default="")),
        exact_hosts=exact_hosts,
        exact_client_id=config("EXACT_CLIENT_ID", default=""),
        exact_client_secret=Secret(config("EXACT_CLIENT_SECRET", default="")),
        exact_minutely_limit=integer("EXACT_MINUTELY_LIMIT", 60, 1),
        exact_daily_limit=integer("EXACT_DAILY_LIMIT", 5000, 1),
        poll_interval_seconds=integer("POLL_INTERVAL_SECONDS", 60, 1),
        basic_poll_interval_seconds=integer("BASIC_POLL_INTERVAL_SECONDS", 7200, 1),
        retention_days=integer("RETENTION_DAYS", 400, 1),
        metrics_token=Secret(config("METRICS_TOKEN", default="")),
        worker_metrics_port=integer("WORKER_METRICS_PORT", 0, 0, 65535),
        worker_metrics_host=config("WORKER_METRICS_HOST", default="0.0.0.0"),  # noqa: S104
        smtp_host=config("SMTP_HOST", default=""),
        smtp_port=integer("SMTP_PORT", 587, 1),
        smtp_user=config("SMTP_USER", default=""),
        smtp_password=Secret(config("SMTP_PASSWORD", default="")),
        smtp_from=config("SMTP_FROM", default="gateway@localhost"),
        support_email=config("SUPPORT_EMAIL", default=""),
        support_phone=config("SUPPORT_PHONE", default=""),
        trial_days=integer("TRIAL_DAYS", 30, 0),
        prices=prices,
        sandbox_enabled=flag("SANDBOX", env == "dev"),
        sandbox_faults=flag("SANDBOX_FAULTS", False),
        forwarded_allow_ips=tuple(CommaSeparatedStrings(config("FORWARDED_ALLOW_IPS", default=""))),
        allowed_hosts=tuple(h.lower() for h in CommaSeparatedStrings(config("ALLOWED_HOSTS", default=""))),
        allow_http_public_url=flag("ALLOW_HTTP_PUBLIC_URL", False),
        password_hash_concurrency=integer("PASSWORD_HASH_CONCURRENCY", default_hash_concurrency(), 1, 64),
        outbox_retention_days=integer("OUTBOX_RETENTION_DAYS", 30, 1),
    )
    if env == "production":
        errors.extend(production_problems(settings))
    if errors:
        raise SettingsError(errors)
    return settings


def default_hash_concurrency() -> int:
    """One argon2 hash at a time per two cores: each hash already runs its 4 lanes in threads, and a second hash on a
    2-core machine costs the event loop its core (bench login_load: p99 7.7 ms at 1, 10.7 ms at 2, for 8 % more
    logins)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _is_fernet_key(key: str) -> bool:
    try:
        Fernet(key.encode())
    except ValueError:
        return False
    return True


def _production_problems(secret_key: str, keys_raw: str, var_dir: Path) -> list[str]:
    """Dev secrets in production: the generated file anywhere we look, or a value carrying the dev marker."""
    problems = []
    if secret_key.strip().lower() in PLACEHOLDERS:
        problems.append("SECRET_KEY must be set to a random value in production")
    if keys_raw.strip().lower() in PLACEHOLDERS:
        problems.append("ENCRYPTION_KEYS must be set in production")
    dev = _read_dev_secrets(var_dir)
    if dev:
        problems.append(f"{var_dir / DEV_SECRETS_FILE} exists: production refuses to start beside dev secrets")
    if secret_key.startswith(DEV_SECRET_MARKER) or (dev and secret_key == dev.get("secret_key")):
        problems.append("SECRET_KEY is the generated dev secret; production refuses it")
    keys = list(CommaSeparatedStrings(keys_raw))
    if any(_is_dev_fernet_key(k) for k in keys) or (dev and dev.get("encryption_key") in keys):
        problems.append("ENCRYPTION_KEYS contains the generated dev key; production refuses it")
    return problems


def estimated_entropy_bits(value: bytes) -> float:
    """A conservative guess at how much randomness a secret holds: the smaller of its Shannon entropy (symbol
    frequencies times length: `aaaa…` holds none) and its zlib-compressed size (a repeated word compresses away)."""
    if not value:
        return 0.0
    n = len(value)
    shannon = -sum(c / n * math.log2(c / n) for c in Counter(value).values()) * n
    compressed = (len(zlib.compress(value, 9)) - 6) * 8  # minus zlib's 2-byte header and 4-byte checksum
    return min(shannon, float(compressed))


def _fernet_bytes(key: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(key.encode())
    except ValueError:
        return b""


def _is_dev_fernet_key(key: str) -> bool:
    return _fernet_bytes(key).startswith(DEV_FERNET_MARKER)


def production_problems(settings: Settings) -> list[str]:
    """What production refuses in an otherwise well-formed configuration, one line per problem (docs/security.md)."""
    problems = []
    if (
        len(str(settings.secret_key)) < 32
        or estimated_entropy_bits(str(settings.secret_key).encode()) < MIN_SECRET_BITS
    ):
        problems.append(
            f"SECRET_KEY holds too little randomness (need >= 32 characters and ~{MIN_SECRET_BITS} bits; "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    for index, key in enumerate(settings.encryption_keys):
        raw = _fernet_bytes(str(key))
        if raw and estimated_entropy_bits(raw) < MIN_SECRET_BITS:
            problems.append(
                f"ENCRYPTION_KEYS entry {index + 1} holds too little randomness (use Fernet.generate_key())"
            )
    token = str(settings.metrics_token)
    if token and estimated_entropy_bits(token.encode()) < MIN_SECRET_BITS:
        problems.append(f"METRICS_TOKEN holds too little randomness (need ~{MIN_SECRET_BITS} bits)")
    if urlsplit(settings.public_url).scheme != "https" and not settings.allow_http_public_url:
        problems.append(
            "PUBLIC_URL must start with https:// in production (ALLOW_HTTP_PUBLIC_URL=true for a private network)"
        )
    if not settings.public_host:
        problems.append("PUBLIC_URL must name a host")
    if not settings.database_url.startswith("postgresql+asyncpg://"):
        problems.append(
            "DATABASE_URL must be PostgreSQL (postgresql+asyncpg://) in production; SQLite is for dev and tests"
        )
    if settings.sandbox_enabled:
        problems.append("SANDBOX must be off in production")
    if settings.sandbox_faults:
        problems.append("SANDBOX_FAULTS must be off in production")
    return problems


def _read_dev_secrets(var_dir: Path) -> dict[str, str]:
    path = var_dir / DEV_SECRETS_FILE
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def _dev_secrets(var_dir: Path) -> dict[str, str]:
    """Generate the dev secrets once and keep them under var/ so sessions and tokens survive restarts."""
    existing = _read_dev_secrets(var_dir)
    if existing:
        return existing
    var_dir.mkdir(parents=True, exist_ok=True)
    fernet_key = base64.urlsafe_b64encode(DEV_FERNET_MARKER + secrets.token_bytes(32 - len(DEV_FERNET_MARKER)))
    values = {"secret_key": DEV_SECRET_MARKER + secrets.token_urlsafe(48), "encryption_key": fernet_key.decode()}
    path = var_dir / DEV_SECRETS_FILE
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values
