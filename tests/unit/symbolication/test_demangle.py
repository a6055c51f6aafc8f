"""Readable names (`symbolication/demangle.py`), as Symbolicator shows them.

Symbolicator demangles with symbolic's "complete, without return type"
options: parameters are kept, return types are not, Rust hashes are dropped.
"""

from __future__ import annotations

import pytest

from symvault.symbolication.demangle import Demangler


@pytest.fixture
def demangler() -> Demangler:
    return Demangler()


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("_Z10shapes_runi", "shapes_run(int)"),
        ("_ZN6shapes11shapes_sinkEPVll", "shapes::shapes_sink(long volatile*, long)"),
        ("_ZNK6shapes5Shape11scaled_areaEPVl", "shapes::Shape::scaled_area(long volatile*) const"),
        # Templates: no return type.
        (
            "_ZN6shapes16accumulate_areasIlEET_PKPKNS_5ShapeEiPVl",
            "shapes::accumulate_areas<long>(shapes::Shape const* const*, int, long volatile*)",
        ),
        ("_Z3maxIiET_S0_S0_", "max<int>(int, int)"),
        ("_ZN6shapes5ShapeC2El", "shapes::Shape::Shape(long)"),
        ("_ZN6shapes5ShapeD0Ev", "shapes::Shape::~Shape()"),
        ("_ZNKR3Foo3barEv", "Foo::bar() const &"),
        (
            "_ZNSt6vectorIiSaIiEE9push_backERKi",
            "std::vector<int, std::allocator<int>>::push_back(int const&)",
        ),
        # Lambdas as cpp_demangle spells them.
        ("_ZZ4mainENKUlvE_clEv", "main::{lambda()#1}::operator()() const"),
        ("_ZZ4mainENKUliE0_clEi", "main::{lambda(int)#2}::operator()(int) const"),
        # Mach-O's extra underscore.
        ("__ZN6shapes11shapes_sinkEPVll", "shapes::shapes_sink(long volatile*, long)"),
        # A hash suffix some toolchains add is ignored.
        ("_ZN3foo3barEv$0123456789abcdef0123456789abcdef", "foo::bar()"),
    ],
)
def test_cpp(demangler: Demangler, symbol: str, expected: str) -> None:
    assert demangler.demangle(symbol) == expected
    assert demangler.demangle(symbol, "cpp") == expected
    assert demangler.demangle(symbol, "objcpp") == expected


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        # Legacy mangling: the hash goes.
        ("_ZN4core3fmt9Formatter3pad17h0123456789abcdefE", "core::fmt::Formatter::pad"),
        ("_ZN7rustapp4main17hcfcc9e17ff30cf99E", "rustapp::main"),
        (
            "_ZN7rustapp14rustapp_engine20rustapp_inline_inner17h7c023d5902cb5bd5E",
            "rustapp::rustapp_engine::rustapp_inline_inner",
        ),
        # v0 mangling: crate disambiguators go.
        ("_RNvNtCs1234_7mycrate3foo3bar", "mycrate::foo::bar"),
        ("_RINvNtC3std3mem8align_ofjE", "std::mem::align_of::<usize>"),
        ("_RNvMNtCs9ltgdHTiPiY_4core3fmtNtB2_9Formatter3pad", "<core::fmt::Formatter>::pad"),
    ],
)
def test_rust(demangler: Demangler, symbol: str, expected: str) -> None:
    assert demangler.demangle(symbol) == expected
    assert demangler.demangle(symbol, "rust") == expected


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("$s4main3FooV3baryyF", "main.Foo.bar()"),
        ("_$s4main3FooV3baryyF", "main.Foo.bar()"),
        ("$s4main4testyySi_SStF", "main.test(Swift.Int, Swift.String)"),
        # symbolic's documented example, without its return type.
        (
            "$s8mangling12GenericUnionO3FooyACyxGSicAEmlF",
            "mangling.GenericUnion.Foo<A>(mangling.GenericUnion<A>.Type)",
        ),
        ("$sSS5countSivg", "Swift.String.count.getter"),
    ],
)
def test_swift(demangler: Demangler, symbol: str, expected: str) -> None:
    assert demangler.demangle(symbol) == expected
    assert demangler.demangle(symbol, "swift") == expected


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("?foo@@YAHH@Z", "foo(int)"),
        ("?f@@YAXXZ", "f(void)"),
        # No access specifier, `static`/`virtual`, calling convention or return type...
        ("?LoadV8Snapshot@V8Initializer@gin@@SAXXZ", "gin::V8Initializer::LoadV8Snapshot(void)"),
        ("??0Foo@@QEAA@XZ", "Foo::Foo(void)"),
        ("?vbar@Foo@@UEAAHH@Z", "Foo::vbar(int)"),
        ("?pbar@Foo@@AEAAHH@Z", "Foo::pbar(int)"),
        # ... but the qualifiers of `this`.
        ("?bar@Foo@@QEBAHH@Z", "Foo::bar(int) const"),
        ("?bar@Foo@@QEGBAHH@Z", "Foo::bar(int) const &"),
        # No `class` keyword on types.
        ("??9@YA_NAEBVGURL@@0@Z", "operator!=(GURL const &, GURL const &)"),
        ("?foo@@YAXPEAUS@@@Z", "foo(S *)"),
        # MD5-hashed names stay as they are.
        ("??@0123456789abcdef0123456789abcdef@", "??@0123456789abcdef0123456789abcdef@"),
    ],
)
def test_msvc(demangler: Demangler, symbol: str, expected: str) -> None:
    assert demangler.demangle(symbol) == expected
    assert demangler.demangle(symbol, "cpp") == expected


@pytest.mark.parametrize("symbol", ["-[NSObject init]", "+[Foo bar:baz:]", "-[Foo(Category) x]"])
def test_objective_c_names_are_their_own_demangling(demangler: Demangler, symbol: str) -> None:
    assert demangler.demangle(symbol) == symbol
    assert demangler.demangle(symbol, "objc") == symbol
    assert demangler.demangle(symbol, "objcpp") == symbol


@pytest.mark.parametrize(
    "symbol",
    [
        "main",
        "crash_run",
        "_start",
        "__libc_start_main",
        "_Zfoo",
        "?notvalid",
        "@?foo@@YAHH@Z",
        "",
        # Manglings symbolic does not read (GNU v2, CodeWarrior, Ada): plain C names here.
        "foo__Fi",
        "__ct__3FooFv",
        "ada__text_io__put_line",
    ],
)
def test_names_that_are_not_mangled(demangler: Demangler, symbol: str) -> None:
    assert demangler.demangle(symbol) is None


@pytest.mark.parametrize("language", ["c", "d", "go", "csharp"])
def test_languages_without_mangling(demangler: Demangler, language: str) -> None:
    """A C function named like a C++ one keeps its name (the debug info says C)."""
    assert demangler.demangle("_Z10shapes_runi", language) is None
    assert demangler.demangle("_Z10shapes_runi", "unknown") == "shapes_run(int)"


def test_overlong_names_are_left_alone(demangler: Demangler) -> None:
    long_name = "_ZN" + "".join(f"{len(part)}{part}" for part in ["abcdefgh"] * 500) + "Ev"
    assert len(long_name) > 4096
    assert demangler.demangle(long_name) is None


def test_results_are_remembered_up_to_capacity() -> None:
    demangler = Demangler(capacity=2)
    assert demangler.demangle("_Z1av") == "a()"
    assert demangler.demangle("_Z1bv") == "b()"
    assert demangler.demangle("_Z1cv") == "c()"
    assert len(demangler._known) == 2
    assert "_Z1av" not in demangler._known
    assert demangler.demangle("_Z1av") == "a()"
