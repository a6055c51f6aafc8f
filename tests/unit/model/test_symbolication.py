"""The `/symbolicate` request schema (`model/symbolication.py`), as Symbolicator reads it."""

from __future__ import annotations

from typing import Any

import pytest

from symvault.model.sources import HttpSourceConfig, StoreSourceConfig
from symvault.model.symbolication import (
    RequestError,
    RequestOptions,
    SymbolicateRequest,
    parse_hex,
    parse_request,
)

U64_MAX = (1 << 64) - 1


class TestHexValues:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0, 0),
            (4096, 4096),
            (U64_MAX, U64_MAX),
            (-1, U64_MAX),  # negative JSON numbers wrap, as Symbolicator's casts do
            (-(1 << 63), 1 << 63),
            ("0x1000", 0x1000),
            ("0X1A", 0x1A),
            ("0xabcDEF", 0xABCDEF),
            ("0xffffffffffffffff", U64_MAX),
            ("4096", 4096),  # not hex: strings without 0x are decimal
            ("0010", 10),
            ("+5", 5),
        ],
    )
    def test_accepted(self, value: Any, expected: int) -> None:
        assert parse_hex(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "0x",
            "x10",
            "0x10g",
            "ten",
            "-5",
            "0x-5",
            " 0x10",
            "0x10 ",
            "0x1_0",
            "1_000",
            "\u0663",  # an Arabic-Indic digit
            "0x10000000000000000",
            str(1 << 64),
            1 << 64,
            -(1 << 63) - 1,
            1.5,
            4096.0,
            True,
            None,
            [16],
        ],
    )
    def test_refused(self, value: Any) -> None:
        with pytest.raises(ValueError, match="address"):
            parse_hex(value)


def frame_request(**frame: Any) -> dict[str, Any]:
    return {"stacktraces": [{"frames": [{"instruction_addr": "0x1000", **frame}]}]}


class TestAddrMode:
    @pytest.mark.parametrize(
        ("mode", "module"),
        [("abs", None), ("rel:0", 0), ("rel:12", 12), ("rel:007", 7)],
    )
    def test_accepted(self, mode: str, module: int | None) -> None:
        (frame,) = parse_request(frame_request(addr_mode=mode)).stacktraces[0].frames
        assert frame.relative_module == module
        assert frame.addr_mode == ("abs" if module is None else f"rel:{module}")

    def test_default_is_absolute(self) -> None:
        (frame,) = parse_request(frame_request()).stacktraces[0].frames
        assert frame.addr_mode == "abs"
        assert frame.relative_module is None

    @pytest.mark.parametrize(
        "mode", ["rel", "rel:", "rel:x", "rel:-1", "Abs", "REL:1", "rel:1:2", "rel:\u0663", "", 0]
    )
    def test_refused(self, mode: Any) -> None:
        with pytest.raises(RequestError, match=r"^stacktraces\.0\.frames\.0\.addr_mode: "):
            parse_request(frame_request(addr_mode=mode))


class TestFields:
    def test_a_complete_request(self) -> None:
        request = parse_request(
            {
                "platform": "native",
                "signal": 11,
                "sources": [
                    {"type": "http", "id": "ms", "url": "https://msdl.microsoft.com/download"},
                    {"type": "store", "id": "own", "organization": "org", "project": "app"},
                ],
                "stacktraces": [
                    {
                        "thread_id": 7,
                        "thread_name": "main",
                        "is_requesting": True,
                        "registers": {"rip": "0x1000", "rsp": 4096},
                        "frames": [
                            {
                                "instruction_addr": 4097,
                                "addr_mode": "rel:0",
                                "adjust_instruction_addr": False,
                                "function_id": "0x5",
                                "lang": "cpp",
                                "trust": "cfi",
                                "sym_addr": "0x1000",
                                "lineno": 0,
                                "pre_context": ["a"],
                            }
                        ],
                    }
                ],
                "modules": [
                    {
                        "type": "elf",
                        "code_id": "abc",
                        "debug_id": "dfb8e43a-f242-3d73-a453-aeb6a777ef75",
                        "image_addr": "0x1000",
                        "image_size": 4096,
                    }
                ],
                "options": {
                    "dif_candidates": True,
                    "apply_source_context": False,
                    "frame_order": "caller_first",
                },
            }
        )
        assert request.signal == 11
        assert request.sources is not None
        assert isinstance(request.sources[0], HttpSourceConfig)
        assert isinstance(request.sources[1], StoreSourceConfig)
        (thread,) = request.stacktraces
        assert thread.registers == {"rip": 0x1000, "rsp": 4096}
        (frame,) = thread.frames
        assert (frame.instruction_addr, frame.function_id, frame.sym_addr) == (4097, 5, 0x1000)
        assert frame.lineno == 0
        assert frame.pre_context == ("a",)
        assert request.modules[0].image_addr == 0x1000
        assert request.options == RequestOptions(
            dif_candidates=True, apply_source_context=False, frame_order="caller_first"
        )
        assert request.frame_count == 1

    def test_defaults(self) -> None:
        request = parse_request({})
        assert request.sources is None  # the configured sources
        assert request.stacktraces == ()
        assert request.modules == ()
        assert request.signal is None
        assert request.options == RequestOptions(
            dif_candidates=False, apply_source_context=True, frame_order="callee_first"
        )
        assert parse_request({"sources": []}).sources == ()  # no sources at all

    def test_unknown_fields_are_ignored_everywhere(self) -> None:
        request = parse_request(
            {
                "unknown": 1,
                "threads": [{"frames": [{"instruction_addr": "0x1"}]}],
                "options": {"extract_variables": True, "what": None},
                "modules": [{"type": "elf", "surprise": [1]}],
                "stacktraces": [{"extra": {}, "frames": [{"instruction_addr": 1, "in_app": True}]}],
                "sources": [{"type": "http", "id": "x", "url": "http://h/", "bonus": 1}],
            }
        )
        assert request.stacktraces[0].frames[0].instruction_addr == 1
        assert not hasattr(request.stacktraces[0].frames[0], "in_app")

    def test_module_type_is_any_string(self) -> None:
        """Unknown module types mean "try every file type"; they are not an error."""
        request = parse_request({"modules": [{"type": "ELF"}, {"type": "symbian"}]})
        assert [module.type for module in request.modules] == ["ELF", "symbian"]

    def test_image_size_takes_a_hex_string_too(self) -> None:
        (module,) = parse_request({"modules": [{"type": "elf", "image_size": "0x10"}]}).modules
        assert module.image_size == 16


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not an object", "body"),
        ({"stacktraces": [{}]}, "stacktraces.0.frames"),
        ({"stacktraces": [{"frames": [{}]}]}, "stacktraces.0.frames.0.instruction_addr"),
        (frame_request(lang="klingon"), "stacktraces.0.frames.0.lang"),
        (frame_request(lang="C"), "stacktraces.0.frames.0.lang"),
        (frame_request(trust="blind"), "stacktraces.0.frames.0.trust"),
        (frame_request(lineno=-1), "stacktraces.0.frames.0.lineno"),
        (frame_request(lineno="5"), "stacktraces.0.frames.0.lineno"),
        (frame_request(lineno=1 << 32), "stacktraces.0.frames.0.lineno"),
        (frame_request(function=5), "stacktraces.0.frames.0.function"),
        (
            frame_request(adjust_instruction_addr="true"),
            "stacktraces.0.frames.0.adjust_instruction_addr",
        ),
        (frame_request(pre_context="a"), "stacktraces.0.frames.0.pre_context"),
        ({"stacktraces": [{"thread_id": -1, "frames": []}]}, "stacktraces.0.thread_id"),
        ({"stacktraces": [{"is_requesting": 1, "frames": []}]}, "stacktraces.0.is_requesting"),
        (
            {"stacktraces": [{"registers": {"pc": "pc"}, "frames": []}]},
            "stacktraces.0.registers.pc",
        ),
        ({"stacktraces": None}, "stacktraces"),
        ({"modules": [{}]}, "modules.0.type"),
        ({"modules": [{"type": 1}]}, "modules.0.type"),
        ({"modules": [{"type": "elf", "image_addr": "base"}]}, "modules.0.image_addr"),
        ({"signal": "11"}, "signal"),
        ({"signal": True}, "signal"),
        ({"signal": 11.0}, "signal"),
        ({"signal": -1}, "signal"),
        ({"signal": 1 << 32}, "signal"),
        ({"options": {"dif_candidates": "yes"}}, "options.dif_candidates"),
        ({"options": {"apply_source_context": 0}}, "options.apply_source_context"),
        ({"options": {"frame_order": "caller-first"}}, "options.frame_order"),
        ({"sources": [{"type": "nfs", "id": "x"}]}, "sources.0"),
        ({"sources": [{"type": "http", "url": "http://h/"}]}, "sources.0.http.id"),
    ],
)
def test_errors_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(body)
    assert str(caught.value).startswith(f"{field}: "), str(caught.value)


def test_errors_list_every_problem_up_to_ten() -> None:
    frames = [{"lang": "x"} for _ in range(20)]
    with pytest.raises(RequestError) as caught:
        parse_request({"stacktraces": [{"frames": frames}]})
    problems = str(caught.value).split("; ")
    assert len(problems) == 10
    assert problems[0].startswith("stacktraces.0.frames.0.")


def _parsed_twice(body: dict[str, Any]) -> SymbolicateRequest:
    """The request parsed a second time: its frames are remembered from then on."""
    parse_request(body)
    return parse_request(body)


class TestRememberedFrames:
    """Frames seen twice are found, not validated again; what was invalid stays so."""

    def test_a_frame_seen_twice_is_then_found(self) -> None:
        body = frame_request(addr_mode="rel:1", function="seen_twice", lineno=7)
        first = _parsed_twice(body).stacktraces[0].frames[0]
        again = parse_request(frame_request(addr_mode="rel:1", function="seen_twice", lineno=7))
        assert again.stacktraces[0].frames[0] is first
        assert first.relative_module == 1
        assert first.lineno == 7

    def test_a_frame_seen_once_takes_no_place(self) -> None:
        # One-off frames (addresses no other crash shares) must not fill the memo.
        body = frame_request(function="seen_once", lineno=3)
        first = parse_request(body).stacktraces[0].frames[0]
        second = parse_request(body).stacktraces[0].frames[0]
        assert second == first
        assert second is not first
        assert parse_request(body).stacktraces[0].frames[0] is second

    def test_a_frame_repeated_in_one_stack_trace_counts_once(self) -> None:
        repeated = {"instruction_addr": "0x4242", "function": "recursive"}
        body = {"stacktraces": [{"frames": [repeated, dict(repeated), dict(repeated)]}]}
        first = parse_request(body).stacktraces[0].frames
        assert first[0] is first[1] is first[2]
        second = parse_request(body).stacktraces[0].frames
        assert second[0] is not first[0]
        assert parse_request(body).stacktraces[0].frames[0] is second[0]

    def test_other_values_are_other_frames(self) -> None:
        first = parse_request(frame_request(lineno=7)).stacktraces[0].frames[0]
        other = parse_request(frame_request(lineno=8)).stacktraces[0].frames[0]
        assert other is not first
        assert other.lineno == 8

    def test_a_boolean_does_not_find_a_frame_validated_with_an_integer(self) -> None:
        # True == 1 in Python: the memo must still tell them apart.
        assert _parsed_twice(frame_request(lineno=1)).stacktraces[0].frames[0].lineno == 1
        with pytest.raises(RequestError, match=r"^stacktraces\.0\.frames\.0\.lineno: "):
            parse_request(frame_request(lineno=True))

    def test_an_integer_does_not_find_a_frame_validated_with_a_boolean(self) -> None:
        adjusted = _parsed_twice(frame_request(adjust_instruction_addr=True))
        assert adjusted.stacktraces[0].frames[0].adjust_instruction_addr is True
        with pytest.raises(RequestError, match=r"adjust_instruction_addr: "):
            parse_request(frame_request(adjust_instruction_addr=1))

    def test_an_invalid_frame_among_known_ones_is_named(self) -> None:
        known = {"instruction_addr": "0x1000"}
        _parsed_twice({"stacktraces": [{"frames": [known]}]})
        body = {"stacktraces": [{"frames": [known, {"instruction_addr": "0x2", "trust": "x"}]}]}
        with pytest.raises(RequestError, match=r"^stacktraces\.0\.frames\.1\.trust: "):
            parse_request(body)

    def test_frames_with_lists_are_validated_every_time(self) -> None:
        body = frame_request(pre_context=["a", "b"], context_line="c")
        first = parse_request(body).stacktraces[0].frames[0]
        second = parse_request(body).stacktraces[0].frames[0]
        assert first == second
        assert first.pre_context == ("a", "b")

    def test_large_frames_are_not_remembered(self) -> None:
        # The memo's size is bounded by its entry count: a client sending long names
        # must not fill it with megabytes per entry.
        body = frame_request(function="f" * 100_000)
        first = _parsed_twice(body).stacktraces[0].frames[0]
        again = parse_request(body).stacktraces[0].frames[0]
        assert first == again
        assert first is not again
        many = frame_request(**{f"extra_{n}": n for n in range(50)})
        assert (
            _parsed_twice(many).stacktraces[0].frames[0]
            is not (parse_request(many).stacktraces[0].frames[0])
        )


class TestRememberedSources:
    def test_a_source_list_seen_before_is_not_validated_again(self) -> None:
        sources = [{"type": "http", "id": "s", "url": "http://symbols.example.com/"}]
        first = parse_request({"sources": sources}).sources
        assert parse_request({"sources": sources}).sources is first

    def test_long_source_lists_are_not_remembered(self) -> None:
        headers = {f"x-header-{n}": "v" * 100 for n in range(300)}
        sources = [
            {"type": "http", "id": "s", "url": "http://symbols.example.com/", "headers": headers}
        ]
        first = parse_request({"sources": sources}).sources
        second = parse_request({"sources": sources}).sources
        assert first == second
        assert second is not first
