"""Source lines around a frame: 5 before, the line itself, 5 after.

Lines longer than 150 bytes are cut to 140 and marked `{snip}`, as
Symbolicator does, so one minified line cannot blow up a response.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTEXT_LINES", "apply_context"]

CONTEXT_LINES = 5
_MAX_LINE = 150
_CUT_AT = 140


def _trim(line: str) -> str:
    encoded = line.encode("utf-8")
    if len(encoded) <= _MAX_LINE:
        return line
    return encoded[:_CUT_AT].decode("utf-8", errors="ignore") + " {snip}"


def apply_context(frame: dict[str, Any], lines: list[str]) -> bool:
    """Adds `pre_context`, `context_line` and `post_context` to an output frame.

    Returns False (and changes nothing) if the frame's line is not in the file.
    """
    lineno = frame.get("lineno")
    if not isinstance(lineno, int):
        return False
    current = max(lineno, 1) - 1
    if current >= len(lines):
        return False
    start = max(current - CONTEXT_LINES, 0)
    pre = [_trim(line) for line in lines[start:current]]
    post = [_trim(line) for line in lines[current + 1 : current + 1 + CONTEXT_LINES]]
    if pre:
        frame["pre_context"] = pre
    else:
        frame.pop("pre_context", None)
    frame["context_line"] = _trim(lines[current])
    if post:
        frame["post_context"] = post
    else:
        frame.pop("post_context", None)
    return True
