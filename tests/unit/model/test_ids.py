"""Debug ids, code ids and checksums: the forms clients send and their canonical spelling."""

from __future__ import annotations

import random

import pytest
import symbolic

from symvault.model.ids import is_sha1, parse_code_id, parse_debug_id, parse_sha1

UUID = "dfb8e43a-f242-3d73-a453-aeb6a777ef75"
COMPACT = UUID.replace("-", "")


class TestParseDebugId:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (UUID, UUID),
            (UUID.upper(), UUID),
            (f"{UUID}-a", f"{UUID}-a"),
            (f"{UUID}-A", f"{UUID}-a"),
            (f"{UUID}-0000001f", f"{UUID}-1f"),
            (f"{UUID}-ffffffff", f"{UUID}-ffffffff"),
            (COMPACT, UUID),
            (COMPACT.upper(), UUID),
            (f"{COMPACT}a", f"{UUID}-a"),
            (f"{COMPACT.upper()}1A", f"{UUID}-1a"),
            (f"{COMPACT}ffffffff", f"{UUID}-ffffffff"),
            # An age of zero is never written out, whatever form it came in.
            (f"{UUID}-0", UUID),
            (f"{UUID}-00000000", UUID),
            (f"{COMPACT}0", UUID),
            (f"{COMPACT}00000000", UUID),
            # Surrounding whitespace (from headers, query strings) is tolerated.
            (f"  {UUID}\n", UUID),
        ],
    )
    def test_canonical_form(self, value: str, expected: str) -> None:
        assert parse_debug_id(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "   ",
            "not a debug id",
            UUID[:-1],  # 11 digits in the last group
            COMPACT[:-1],  # 31 hex digits
            f"{COMPACT}123456789",  # an age of 9 hex digits does not fit in 32 bits
            f"{UUID}-123456789",
            f"{UUID}-",  # dash without an age
            f"{UUID}1",  # dashed UUID with an age glued on
            f"{COMPACT}-1",  # compact UUID with a dashed age
            f"{{{UUID}}}",  # braces
            f"{UUID}.1",
            "dfb8e43a-f2423d73-a453-aeb6a777ef75",  # dashes in the wrong places
            "g" * 32,
            "dfb8e43a-f242-3d73-a453-aeb6a777ef7g",
        ],
    )
    def test_invalid_forms_are_refused(self, value: str) -> None:
        with pytest.raises(ValueError, match="invalid debug id"):
            parse_debug_id(value)

    def test_agrees_with_symbolic_on_valid_inputs(self) -> None:
        rng = random.Random(20240611)
        samples = []
        for _ in range(200):
            raw = f"{rng.getrandbits(128):032x}"
            dashed = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
            age = rng.choice([0, 1, 0xA, 0x10, 0xFFFF, 0xFFFFFFFF, rng.getrandbits(32)])
            samples += [
                dashed,
                raw,
                f"{dashed}-{age:x}",
                f"{raw}{age:x}",
                f"{dashed}-{age:08x}",
                f"{raw}{age:08X}".upper(),
                dashed.upper(),
            ]
        for value in samples:
            assert parse_debug_id(value) == symbolic.normalize_debug_id(value), value

    def test_is_idempotent(self) -> None:
        for value in (UUID, f"{UUID}-2a"):
            assert parse_debug_id(parse_debug_id(value)) == value


class TestParseCodeId:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            # ELF build id
            (
                "E3D0AE32A4DAE6C6777E7FE80279B4D98E2BEECF",
                "e3d0ae32a4dae6c6777e7fe80279b4d98e2beecf",
            ),
            # Mach-O UUID, dashed
            ("4C4C443A-5555-3144-A1E4-151114C8F85F", "4c4c443a55553144a1e4151114c8f85f"),
            # PE timestamp + image size
            ("121473055000", "121473055000"),
            (" abc ", "abc"),
            ("a" * 128, "a" * 128),
        ],
    )
    def test_lowercase_hex(self, value: str, expected: str) -> None:
        assert parse_code_id(value) == expected
        assert parse_code_id(value) == symbolic.normalize_code_id(value.strip())

    @pytest.mark.parametrize("value", ["", "  ", "-", "xyz", "12 34", "a" * 129, "0x1234"])
    def test_invalid(self, value: str) -> None:
        with pytest.raises(ValueError, match="invalid code id"):
            parse_code_id(value)


class TestSha1:
    def test_is_sha1_requires_the_wire_form(self) -> None:
        assert is_sha1("a" * 40)
        assert is_sha1("0123456789abcdef0123456789abcdef01234567")
        assert not is_sha1("A" * 40)  # uppercase is not the wire form
        assert not is_sha1("a" * 39)
        assert not is_sha1("a" * 41)
        assert not is_sha1("g" * 40)
        assert not is_sha1(" " + "a" * 40)

    def test_parse_sha1_normalizes(self) -> None:
        assert parse_sha1(" " + "AB" * 20 + "\n") == "ab" * 20

    @pytest.mark.parametrize("value", ["", "a" * 39, "a" * 41, "z" * 40, "a" * 20 + "-" + "a" * 19])
    def test_parse_sha1_refuses(self, value: str) -> None:
        with pytest.raises(ValueError, match="invalid SHA-1"):
            parse_sha1(value)
