"""JSON text from outside (request bodies, uploaded files, listings, manifests).

The standard parser recurses once per level of nesting, so a small hostile
document (`[[[[...`) ends in `RecursionError`, which is not a `ValueError` like
every other way JSON can be wrong. `loads` makes it one, so that callers handle
all bad JSON in one place; `TooDeep` lets them say so in their own words.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TooDeep", "loads"]


class TooDeep(ValueError):
    """The document is nested more deeply than the parser can follow."""


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads`; raises `ValueError` (`TooDeep` for nesting) for anything not JSON."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise TooDeep("the JSON is nested too deeply") from exc
