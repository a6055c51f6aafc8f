"""Source lines around a frame (`symbolication/source_context.py`), as Symbolicator cuts them."""

from __future__ import annotations

from typing import Any

import pytest

from symvault.symbolication.source_context import CONTEXT_LINES, apply_context

LINES = [f"line {number}" for number in range(1, 21)]


def context_of(lineno: Any, lines: list[str] = LINES, **frame: Any) -> dict[str, Any] | None:
    output = {"lineno": lineno, **frame}
    if not apply_context(output, lines):
        return None
    return {
        key: output[key] for key in ("pre_context", "context_line", "post_context") if key in output
    }


def test_five_lines_each_side() -> None:
    assert CONTEXT_LINES == 5
    assert context_of(10) == {
        "pre_context": ["line 5", "line 6", "line 7", "line 8", "line 9"],
        "context_line": "line 10",
        "post_context": ["line 11", "line 12", "line 13", "line 14", "line 15"],
    }


@pytest.mark.parametrize(
    ("lineno", "pre", "post"),
    [
        (1, [], [2, 3, 4, 5, 6]),
        (2, [1], [3, 4, 5, 6, 7]),
        (6, [1, 2, 3, 4, 5], [7, 8, 9, 10, 11]),
        (16, [11, 12, 13, 14, 15], [17, 18, 19, 20]),
        (19, [14, 15, 16, 17, 18], [20]),
        (20, [15, 16, 17, 18, 19], []),
    ],
)
def test_fewer_lines_at_the_edges(lineno: int, pre: list[int], post: list[int]) -> None:
    context = context_of(lineno)
    assert context is not None
    assert context.get("pre_context", []) == [f"line {n}" for n in pre]
    assert context["context_line"] == f"line {lineno}"
    assert context.get("post_context", []) == [f"line {n}" for n in post]
    # Empty lists are left out, as Symbolicator's serializer skips them.
    assert ("pre_context" in context) == bool(pre)
    assert ("post_context" in context) == bool(post)


def test_line_zero_is_the_first_line() -> None:
    """Symbolicator's arithmetic saturates at 0, so line 0 shows line 1."""
    assert context_of(0) == {
        "context_line": "line 1",
        "post_context": ["line 2", "line 3", "line 4", "line 5", "line 6"],
    }


@pytest.mark.parametrize("lineno", [21, 1000])
def test_lines_past_the_end_give_nothing(lineno: int) -> None:
    frame = {"lineno": lineno, "pre_context": ["stale"]}
    assert apply_context(frame, LINES) is False
    assert frame == {"lineno": lineno, "pre_context": ["stale"]}


@pytest.mark.parametrize("lineno", [None, "3"])
def test_frames_without_a_line(lineno: Any) -> None:
    assert context_of(lineno) is None


def test_empty_file() -> None:
    assert context_of(1, []) is None
    assert context_of(0, []) is None


def test_stale_context_is_replaced() -> None:
    frame = {"lineno": 1, "pre_context": ["stale"], "post_context": ["stale"]}
    assert apply_context(frame, ["only"])
    assert frame == {"lineno": 1, "context_line": "only"}


class TestLongLines:
    def test_up_to_150_bytes_are_kept(self) -> None:
        line = "x" * 150
        assert context_of(1, [line]) == {"context_line": line}

    def test_longer_lines_are_cut_to_140_bytes(self) -> None:
        line = "y" * 151
        assert context_of(1, [line]) == {"context_line": "y" * 140 + " {snip}"}

    def test_every_context_line_is_cut(self) -> None:
        lines = ["a" * 200, "b" * 200, "c" * 200]
        assert context_of(2, lines) == {
            "pre_context": ["a" * 140 + " {snip}"],
            "context_line": "b" * 140 + " {snip}",
            "post_context": ["c" * 140 + " {snip}"],
        }

    def test_bytes_not_characters(self) -> None:
        """The limit counts UTF-8 bytes; a cut never splits a character."""
        fits = "é" * 75  # 150 bytes
        assert context_of(1, [fits]) == {"context_line": fits}
        cut = context_of(1, ["a" + "é" * 80])  # 161 bytes; byte 140 is inside an é
        assert cut == {"context_line": "a" + "é" * 69 + " {snip}"}
        assert len(("a" + "é" * 69).encode()) == 139
