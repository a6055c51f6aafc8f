"""Entry point for server processes started by uvicorn when `server.workers` > 1.

The parent (`symvault serve`) validates the configuration and passes it to the
worker processes in the `SYMVAULT_CONFIG_JSON` environment variable; each
worker builds its own services from it.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from symvault.api.app import create_api
from symvault.app import build_services
from symvault.config import Config
from symvault.logs import configure_logging

__all__ = ["CONFIG_VARIABLE", "from_environment"]

CONFIG_VARIABLE = "SYMVAULT_CONFIG_JSON"


def from_environment() -> ASGIApp:
    """Builds the app of one worker process (a uvicorn application factory)."""
    config = Config.model_validate_json(os.environ[CONFIG_VARIABLE])
    configure_logging(config.logging.level, config.logging.format, config.logging.access_log)
    return create_api(build_services(config))
