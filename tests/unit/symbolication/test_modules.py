"""Which module an address belongs to (`symbolication/modules.py`), as Symbolicator decides."""

from __future__ import annotations

import pytest

from symvault.model.objects import ObjectType
from symvault.model.symbolication import RawModule
from symvault.symbolication.modules import ModuleTable, normalize_code_id


def table(*ranges: tuple[int, int | None]) -> ModuleTable:
    return ModuleTable(
        tuple(RawModule(type="elf", image_addr=start, image_size=size) for start, size in ranges)
    )


def found(modules: ModuleTable, address: int, relative_to: int | None = None) -> int | None:
    module = modules.find(address, relative_to)
    return None if module is None else module.index


class TestRanges:
    def test_start_and_inclusive_end(self) -> None:
        modules = table((0x1000, 0x100))
        assert found(modules, 0xFFF) is None
        assert found(modules, 0x1000) == 0
        assert found(modules, 0x10FF) == 0
        # Symbolicator's range check lets the first byte past the end through.
        assert found(modules, 0x1100) == 0
        assert found(modules, 0x1101) is None

    def test_request_order_is_kept_whatever_the_addresses(self) -> None:
        modules = table((0x3000, 0x100), (0x1000, 0x100), (0x2000, 0x100))
        assert [found(modules, address) for address in (0x1050, 0x2050, 0x3050)] == [1, 2, 0]
        assert [module.index for module in modules.modules] == [0, 1, 2]
        assert found(modules, 0x1500) is None  # between modules

    def test_overlapping_modules_go_to_the_later_start(self) -> None:
        modules = table((0x1000, 0x1000), (0x1800, 0x100))
        assert found(modules, 0x1700) == 0
        assert found(modules, 0x1850) == 1
        # Past the inner module's end, the outer one is not considered again.
        assert found(modules, 0x1A00) is None

    def test_size_zero_or_missing_on_the_last_module_is_unbounded(self) -> None:
        for size in (None, 0):
            modules = table((0x1000, 0x10), (0x2000, size))
            assert found(modules, 0xFFFF_FFFF_FFFF) == 1
            assert modules.modules[1].image_size is None


class TestBackfill:
    def test_missing_sizes_reach_the_next_module(self) -> None:
        modules = table((0x5000, None), (0x1000, 0), (0x3000, 0x10))
        assert [module.image_size for module in modules.modules] == [None, 0x2000, 0x10]
        assert found(modules, 0x2FFF) == 1
        assert found(modules, 0x3000) == 2
        assert found(modules, 0x4000) is None
        assert found(modules, 0x9000_0000) == 0

    def test_given_sizes_are_kept(self) -> None:
        modules = table((0x1000, 0x10), (0x3000, None))
        assert modules.modules[0].image_size == 0x10
        assert found(modules, 0x2000) is None

    def test_modules_at_the_same_address(self) -> None:
        modules = table((0x1000, None), (0x1000, 0x10))
        assert found(modules, 0x1005) in (0, 1)


class TestRelativeAddresses:
    def test_rel_n_is_the_nth_module_of_the_request(self) -> None:
        modules = table((0x3000, 0x100), (0x1000, 0x100))
        assert found(modules, 0x50, relative_to=0) == 0
        assert found(modules, 0x50, relative_to=1) == 1
        # Relative addresses are not range checked.
        assert found(modules, 0xFFFF_FFFF, relative_to=1) == 1
        assert found(modules, 0x50, relative_to=2) is None

    def test_absolute_of_relative(self) -> None:
        modules = table((0x3000, 0x100))
        module = modules.modules[0]
        assert modules.absolute(module, 0x50, relative_to=0) == 0x3050
        assert modules.absolute(module, 0x3050, relative_to=None) == 0x3050


class TestIdentifiers:
    @pytest.mark.parametrize(
        ("code_id", "expected"),
        [
            ("E3D0AE32A4DAE6C6", "e3d0ae32a4dae6c6"),
            ("4c4c4474-5555-3144-a116-e2bb518c1ac9", "4c4c447455553144a116e2bb518c1ac9"),
            ("5AB380779000", "5ab380779000"),
            ("zz", None),
            ("", None),
            (None, None),
        ],
    )
    def test_code_ids_keep_hex_digits_lowercased(
        self, code_id: str | None, expected: str | None
    ) -> None:
        assert normalize_code_id(code_id) == expected

    def test_module_ids(self) -> None:
        raws = (
            RawModule(type="pe", debug_id="3249D99D0C4049318610F4E4FB0B69361", code_id="ABC"),
            RawModule(type="macho", debug_id="not a debug id", code_id=""),
            RawModule(type="something", debug_id="3249d99d-0c40-4931-8610-f4e4fb0b6936-0"),
        )
        first, second, third = ModuleTable(raws).modules
        assert first.debug_id == "3249d99d-0c40-4931-8610-f4e4fb0b6936-1"
        assert first.code_id == "abc"
        assert first.object_type is ObjectType.PE
        assert second.debug_id is None
        assert second.code_id is None
        assert third.debug_id == "3249d99d-0c40-4931-8610-f4e4fb0b6936"
        assert third.object_type is ObjectType.UNKNOWN
        assert third.object_id.debug_id == third.debug_id

    def test_modules_at_zero_have_no_absolute_addresses(self) -> None:
        modules = table((0, 0x100), (0x1000, 0x100))
        assert not modules.modules[0].supports_absolute_addresses
        assert modules.modules[1].supports_absolute_addresses
