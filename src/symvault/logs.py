"""Structured logging: every event is a name plus key=value fields.

`log_event(logger, "assemble.ok", checksum=...)` renders as
`assemble.ok checksum=...` in text mode and as one JSON object per line in
JSON mode (`logging.format: json`).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["configure_logging", "log_event"]

_FIELDS = "symvault_fields"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Logs `event` with structured `fields`."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS: fields})


def _render_value(value: Any) -> str:
    text = str(value)
    # Quoted (and escaped) when needed to keep each event on one parseable line, also
    # against control characters in values that come from uploads (file names, errors).
    if not text or not text.isprintable() or any(ch in text for ch in ' ="'):
        return json.dumps(text)
    return text


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={_render_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str, fmt: str, access_log: bool = False) -> None:
    """Sends all logs to stderr in the chosen format; HTTP access lines only if asked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn writes access lines whenever its access logger has a handler somewhere.
    logging.getLogger("uvicorn.access").propagate = access_log
    for quiet in ("alembic", "botocore", "boto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(quiet).setLevel(max(root.level, logging.WARNING))
