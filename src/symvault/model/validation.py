"""Validation errors as their senders read them.

Request bodies are JSON and configuration files YAML: their readers know lists and
objects, not the tuples and model classes they are validated into, so pydantic's
messages that name those are put in the sender's terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails  # pydantic's own error type

__all__ = ["problems"]

_SEQUENCE_TYPES = frozenset({"tuple_type", "list_type", "set_type", "frozen_set_type"})
_MAPPING_TYPES = frozenset({"dict_type", "model_type", "model_attributes_type", "dataclass_type"})


def problems(
    exc: ValidationError,
    prefix: str | None = None,
    limit: int | None = 10,
    root: str = "body",
    mapping: str = "an object",
) -> list[str]:
    """`location: message` of each of the first `limit` errors (all if None). `prefix` goes
    before every location (the field the validated value came from); `root` names the
    whole value and `mapping` what the format calls a mapping (JSON: an object)."""
    described = []
    for error in exc.errors()[:limit]:
        location = [prefix, *error["loc"]] if prefix is not None else list(error["loc"])
        where = ".".join(str(part) for part in location) or root
        described.append(f"{where}: {_message(error, mapping)}")
    return described


def _message(error: ErrorDetails, mapping: str) -> str:
    kind = error["type"]
    if kind in _SEQUENCE_TYPES:
        return "Input should be a list"
    if kind in _MAPPING_TYPES:
        return f"Input should be {mapping}"
    if kind == "value_error":
        cause = (error.get("ctx") or {}).get("error")
        if cause is not None:
            return str(cause)  # without pydantic's "Value error, " in front
    return error["msg"]
