"""The reference documentation covers everything that exists."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from starlette.routing import Route

from symvault.api.app import _routes
from symvault.config import Config

DOCS = Path(__file__).parents[2] / "docs"


def _keys(model: BaseModel, prefix: str = "") -> list[str]:
    keys = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys += _keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_configuration_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    keys = _keys(Config())
    assert len(keys) > 40
    missing = [key for key in keys if f"`{key}`" not in text]
    assert missing == []


def test_every_route_is_documented() -> None:
    text = (DOCS / "api.md").read_text()
    paths = {route.path for route in _routes() if isinstance(route, Route)}
    assert "/symbolicate" in paths
    missing = [path for path in paths if path.rstrip("/") not in text]
    assert missing == []
