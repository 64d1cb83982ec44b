"""Logging set-up: one redacting filter every record passes, JSON lines in production, readable lines in dev."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Bound per request / job by the middleware and the worker hooks; read by the formatters.
log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_context", default=None)

_SECRET_QUERY = re.compile(
    r"(?i)\b(token|partner_token|access_token|refresh_token|code|client_secret|password|state|secret|key)"
    r"=([^&\s\"']+)"
)
_SECRET_JSON = re.compile(
    r"(?i)([\"']?(?:token|partner_token|access_token|refresh_token|client_secret|password|secret|cookie|"
    r"authorization)[\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])([^\"',\s}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# Secrets that travel in a path: webhook URL keys and password-reset links (routes/account.py).
_WEBHOOK_PATH = re.compile(r"(/webhooks/mijnwebwinkel/|/reset/)[^/\s?\"']+")


def redact(text: str) -> str:
    """Blank out token-looking values: query parameters, JSON fields, bearer headers, path keys (webhook, reset)."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    text = _SECRET_JSON.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return _WEBHOOK_PATH.sub(lambda m: f"{m.group(1)}[redacted]", text)


class RedactingLogRecord(logging.LogRecord):
    """Every record of every logger is built from this class (see configure_logging), so every handler, including
    test log captures, sees only the redacted message."""

    def getMessage(self) -> str:
        return redact(super().getMessage())


class RedactingFilter(logging.Filter):
    """Redacts exception text too, which formatters render after the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(log_context.get() or {})
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        bound = " ".join(f"{k}={v}" for k, v in (log_context.get() or {}).items())
        time = datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S")
        line = f"{time} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f"  [{bound}]" if bound else "")
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure_logging(*, level: str = "INFO", fmt: str = "console") -> None:
    """Install one stderr handler on the root logger; every logger's records go through the redacting filter."""
    logging.setLogRecordFactory(RedactingLogRecord)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_gateway", False):
            root.removeHandler(existing)
    # A marker on our own handler, so a second call replaces it and leaves handlers others installed alone.
    handler._gateway = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Library loggers that would print URLs (with query tokens) or headers below WARNING stay quiet.
    for name in ("httpx", "httpcore", "uvicorn.access", "alembic.runtime.plugins", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)


def bind(**values: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add ids (request_id, job_id, integration_id, order_number) to every log line in the current context."""
    return log_context.set({**(log_context.get() or {}), **values})
