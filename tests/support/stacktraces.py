"""`/symbolicate` requests built from the fixture manifest, and responses made comparable.

The manifest's `probes` hold return addresses (relative to the image) with the
frames llvm-symbolizer / llvm-pdbutil report for them, innermost first. A test
places a module at an image address of its choosing and turns probes into
caller frames (absolute return addresses); `crash_addresses` give a crashing
frame 0.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "FIELD_ORDER",
    "FIXTURE_ROOT",
    "crash_frame",
    "expected_function",
    "id_placeholders",
    "module_of",
    "native_debug_path",
    "normalize",
    "probe_frames",
    "probes_of",
    "store_source",
    "symbolicate",
]

FIXTURE_ROOT = str(Path(__file__).resolve().parents[1] / "fixtures" / "build")
#: The order of frame fields in Symbolicator's responses (the order of its struct fields).
FIELD_ORDER = (
    "status",
    "original_index",
    "platform",
    "addr_mode",
    "instruction_addr",
    "adjust_instruction_addr",
    "function_id",
    "package",
    "lang",
    "symbol",
    "sym_addr",
    "function",
    "filename",
    "abs_path",
    "lineno",
    "pre_context",
    "context_line",
    "post_context",
    "source_link",
    "trust",
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_RETURN_TYPE = re.compile(r"^(?:long|int|void|unsigned|char|double|float|bool)\s+(?=\S+\()")


def module_of(
    fixtures: Mapping[str, Any], key: str, image_addr: int, **overrides: Any
) -> dict[str, Any]:
    """A request module for fixture `key` loaded at `image_addr`."""
    entry = fixtures[key]
    module_type = {"elf": "elf", "macho": "macho", "pe": "pe", "wasm": "wasm"}.get(
        entry["file_format"], "elf"
    )
    module: dict[str, Any] = {
        "type": module_type,
        "code_id": entry["code_id"],
        "code_file": f"/opt/app/{entry['object_name']}",
        "debug_id": entry["debug_id"],
        "image_addr": hex(image_addr),
        "image_size": entry["image_size"],
    }
    module.update(overrides)
    return {key: value for key, value in module.items() if value is not None}


def probes_of(fixtures: Mapping[str, Any], program: str) -> list[dict[str, Any]]:
    """The return-address probes of a program (`crash_elf`, `crash_pe`, ...)."""
    probes: list[dict[str, Any]] = fixtures["probes"][program]
    assert probes, f"no probes for {program}"
    return probes


def probe_frames(
    fixtures: Mapping[str, Any], program: str, image_addr: int, **fields: Any
) -> list[dict[str, Any]]:
    """Caller frames at the probes' absolute return addresses, in probe order."""
    return [
        {"instruction_addr": hex(image_addr + int(probe["return_address"], 16)), **fields}
        for probe in probes_of(fixtures, program)
    ]


def crash_frame(fixtures: Mapping[str, Any], program: str, image_addr: int) -> dict[str, Any]:
    """A crashing frame 0 at the program's faulting store."""
    address = int(fixtures["crash_addresses"][program]["address"], 16)
    return {"instruction_addr": hex(image_addr + address)}


def expected_function(probe_frame: Mapping[str, Any]) -> str:
    """The name Symbolicator shows for a probe frame: llvm's demangling without
    the return type (templates) and without Rust's hash suffix."""
    function = str(probe_frame["function"])
    function = _RETURN_TYPE.sub("", function)
    return re.sub(r"::h[0-9a-f]{16}$", "", function)


def native_debug_path(fixtures: Mapping[str, Any], program: str) -> str:
    """Where a symbol server in the native layout keeps an ELF program's debug
    companion: its build id split as `xx/rest.debug`."""
    code_id: str = fixtures[program]["code_id"]
    return f"{code_id[:2]}/{code_id[2:]}.debug"


def store_source(organization: str, project: str, source_id: str = "store") -> dict[str, Any]:
    return {
        "type": "store",
        "id": source_id,
        "organization": organization,
        "project": project,
    }


def symbolicate(client: httpx.Client, body: Mapping[str, Any], **params: Any) -> dict[str, Any]:
    """POSTs a request and returns the completed response (failing on anything else)."""
    response = client.post("/symbolicate", json=body, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "completed", result
    return result


def normalize(
    value: Any, fixtures: Mapping[str, Any], replacements: Iterable[tuple[str, str]] = ()
) -> Any:
    """A copy of a response with volatile values replaced, for snapshots: the
    fixtures' debug and code ids and image sizes (they depend on the absolute paths
    the fixtures were built at), request ids, the fixture directory, and any
    (text, placeholder) pairs given."""
    pairs = [*id_placeholders(fixtures), (FIXTURE_ROOT, "<fixtures>"), *replacements]
    # Image sizes, too, move with the length of the paths in the files.
    sizes: dict[int, str] = {}
    for name, artifact in fixtures.items():
        if isinstance(artifact, dict) and isinstance(artifact.get("image_size"), int):
            sizes.setdefault(artifact["image_size"], f"<{name} image_size>")

    def visit(item: Any) -> Any:
        if isinstance(item, dict):
            return {
                visit(key): sizes.get(inner, inner) if key == "image_size" else visit(inner)
                for key, inner in item.items()
            }
        if isinstance(item, list):
            return [visit(inner) for inner in item]
        if isinstance(item, str):
            for text, placeholder in pairs:
                item = item.replace(text, placeholder)
            return "<request id>" if _UUID.match(item) else item
        return item

    return visit(copy.deepcopy(value))


def id_placeholders(fixtures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(text, placeholder) pairs for every spelling of the fixtures' ids that
    responses hold: hyphenated, compact in either case, Breakpad's form (compact
    upper case with the age appended) and split into a symbol server's
    `xx/rest` directories. Longest first, so no spelling is cut by a shorter one."""
    named = [
        (ident, f"<{name} {field}>", field == "debug_id")
        for name, artifact in fixtures.items()
        if isinstance(artifact, dict)
        for field in ("debug_id", "code_id")
        if isinstance(ident := artifact.get(field), str)
    ]
    # Each id as written first (so a code id equal to a compact debug id keeps its
    # own name), then its other spellings; the first artifact in the manifest names it.
    spellings: dict[str, str] = {}
    for ident, label, _ in named:
        spellings.setdefault(ident, label)
    for ident, label, is_debug_id in named:
        for spelling in _spellings(ident, is_debug_id):
            spellings.setdefault(spelling, label)
    return sorted(spellings.items(), key=lambda pair: len(pair[0]), reverse=True)


def _spellings(ident: str, is_debug_id: bool) -> set[str]:
    compact = ident.replace("-", "")
    forms = {ident, compact, compact.upper()}
    if is_debug_id:
        uuid_part, _, age = ident[:36], ident[36:37], ident[37:] or "0"
        forms.add(uuid_part.replace("-", "").upper() + age.upper())
    split = {f"{form[:2]}/{form[2:]}" for form in forms}
    return {form for form in forms | split if len(form) >= 8}
