"""Readable function names from mangled symbols: C++, Rust, Swift, MSVC.

Names are written as Symbolicator writes them: with parameters, without return
types (`shapes::accumulate_areas<long>(shapes::Shape const* const*, int)`),
Rust without the hash suffix, Objective-C unchanged. A name that is not mangled,
or that fails to demangle, gives None and the raw symbol is used instead.

One difference is left: MSVC parameter types keep a space before `*` and `&`
(`operator!=(GURL const &, GURL const &)`, where symbolic writes `GURL const&`).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import demangle as demangle_lib

__all__ = ["Demangler"]

#: Languages whose names are never mangled.
_PLAIN_LANGUAGES = frozenset({"c", "d", "go", "csharp"})
_MAX_SYMBOL = 4096
#: A hash some toolchains append to C++ names, which symbolic strips before demangling.
_CPP_HASH_SUFFIX = re.compile(r"\$[0-9a-fA-F]{32}$")
#: Itanium closures spelled as cpp_demangle (symbolic) spells them: `{lambda(int)#1}`.
_ITANIUM_STYLE = demangle_lib.style("llvm", itanium={"gnu_closure_spelling": True})
#: MSVC names as symbolic's msvc-demangler flags spell them: the name, parameters and
#: `this` qualifiers; no return type, access specifier, `static`/`virtual`, calling
#: convention or `class`/`struct` keywords.
_MSVC_STYLE = demangle_lib.style(
    "llvm",
    msvc={
        "return_type": False,
        "variable_type": False,
        "access_specifier": False,
        "member_type": False,
        "calling_convention": False,
        "ms_keywords": False,
        "tag_kind": False,
    },
)


#: The manglings symbolic reads (MSVC names are told apart by their first character):
#: a C name with a double underscore is not taken for GNU v2 or Ada, for example.
_LANGUAGES = ("itanium", "rust", "swift", "objc")


class Demangler:
    """Demangles names, remembering recent results (the same names recur in every crash)."""

    def __init__(self, capacity: int = 65_536) -> None:
        self._capacity = capacity
        self._known: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def warm_up() -> None:
        """Imports the demangling schemes (a fifth of a second) at start-up, rather
        than in the first request that needs them."""
        demangle_lib.preload(*_LANGUAGES, "msvc")

    def demangle(self, symbol: str, language: str | None = None) -> str | None:
        """The readable name, or None if `symbol` is not a mangled name."""
        if language in _PLAIN_LANGUAGES or not symbol or len(symbol) > _MAX_SYMBOL:
            return None
        with self._lock:
            if symbol in self._known:
                return self._known[symbol]
        readable = _demangle(symbol)
        with self._lock:
            self._known[symbol] = readable
            if len(self._known) > self._capacity:
                self._known.popitem(last=False)
        return readable


def _demangle(symbol: str) -> str | None:
    if symbol.startswith(("-[", "+[")):
        return symbol  # Objective-C names are already readable
    try:
        if symbol.startswith(("?", "@?")):
            # MSVC: the signature's qualifiers would mix `public`/`static` into `const`.
            readable: str = demangle_lib.demangle_strict(symbol, language="msvc", style=_MSVC_STYLE)
            return readable
        signature = demangle_lib.signature(
            _CPP_HASH_SUFFIX.sub("", symbol), language=_LANGUAGES, style=_ITANIUM_STYLE
        )
    except (demangle_lib.DemanglingError, RecursionError):
        return None
    name: str = signature.qualified_name
    if signature.is_function and signature.parameters is not None:
        name += "(" + ", ".join(signature.parameters) + ")"
        if signature.qualifiers:
            name += " " + " ".join(signature.qualifiers)
    return name
