"""The real sentry-cli uploads real debug files to the real server."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

_OK_LINE = re.compile(r"^\s*OK ([0-9a-f-]+) \(([^;]+); ([^ )]+)(?: ([a-z ]+))?\)\s*$", re.M)
_ERROR_LINE = re.compile(r"^\s*ERROR (\S+)\s*$", re.M)

UPLOADED = [
    "crash_elf",
    "crash_elf_debug",
    "shapes_elf",
    "shapes_elf_debug",
    "rust_elf",
    "rust_elf_debug",
    "crash_pe",
    "crash_pdb",
    "crash_macho_x86_64",
    "crash_dsym_x86_64",
    "crash_macho_arm64",
    "crash_dsym_arm64",
    "crash_breakpad",
    "crash_wasm",
]


def _ok_lines(output: str) -> set[tuple[str, str, str]]:
    """(debug id, object name, arch) of every `OK` line."""
    return {(m.group(1), m.group(2), m.group(3)) for m in _OK_LINE.finditer(output)}


def _ok_kinds(output: str) -> set[tuple[str, str, str]]:
    """(debug id, object name, kind as sentry-cli prints it) of every `OK` line."""
    return {(m.group(1), m.group(2), m.group(4) or "") for m in _OK_LINE.finditer(output)}


def _bundle_sources(cli: SentryCli, debug_file: Path, out_dir: Path) -> Path:
    result = cli.run("debug-files", "bundle-sources", str(debug_file), "-o", str(out_dir))
    assert result.returncode == 0, result.stderr
    bundles = list(out_dir.glob("*.src.zip"))
    assert len(bundles) == 1, result.stdout
    return bundles[0]


def test_upload_every_format_then_nothing_left(
    server: ServerProcess,
    sentry_cli: SentryCli,
    fixtures: dict[str, Any],
    project: str,
    tmp_path: Path,
) -> None:
    keys = [key for key in UPLOADED if fixtures.get(key)]
    paths = [fixture_path(fixtures, key) for key in keys]
    bundle = _bundle_sources(sentry_cli, fixture_path(fixtures, "crash_elf_debug"), tmp_path)

    first = sentry_cli.upload("default", project, *paths, bundle)
    assert first.returncode == 0, first.stdout + first.stderr
    reported = _ok_lines(first.stdout)
    for key in keys:
        entry = fixtures[key]
        name = entry["object_name"]
        if entry["file_format"] == "breakpad":
            name = name.removesuffix(".sym")  # as Sentry names Breakpad files
        assert (entry["debug_id"], name, entry["arch"]) in reported, (key, first.stdout)
    assert (fixtures["crash_elf_debug"]["debug_id"], bundle.name, "x86_64") in reported
    kinds = _ok_kinds(first.stdout)
    assert (fixtures["crash_breakpad"]["debug_id"], "crash", "debug companion") in kinds
    assert (fixtures["crash_pe"]["debug_id"], "crash.exe", "executable") in kinds
    assert "ERROR" not in first.stdout

    second = sentry_cli.upload("default", project, *paths, bundle)
    assert second.returncode == 0, second.stderr
    assert "Nothing to upload, all files are on the server" in second.stdout

    with server.client() as client:
        listed = client.get(
            f"/api/0/projects/default/{project}/files/dsyms/", params={"per_page": 100}
        )
    assert listed.status_code == 200
    by_name = {(item["objectName"], item["debugId"]): item for item in listed.json()}
    pdb = by_name[("crash.pdb", fixtures["crash_pdb"]["debug_id"])]
    assert pdb["symbolType"] == "pdb"
    assert pdb["headers"] == {"Content-Type": "application/x-ms-pdb"}
    assert pdb["sha1"] == fixtures["crash_pdb"]["sha1"]
    assert pdb["data"] == {"type": "dbg", "features": ["debug", "symtab"]}
    assert set(pdb["data"]["features"]) == set(fixtures["crash_pdb"]["features"])
    sources = by_name[(bundle.name, fixtures["crash_elf_debug"]["debug_id"])]
    assert sources["symbolType"] == "sourcebundle"
    assert sources["data"]["features"] == ["sources"]


def test_corrupt_and_unsupported_files_fail_while_good_ones_succeed(
    sentry_cli: SentryCli, fixtures: dict[str, Any], project: str, tmp_path: Path
) -> None:
    good = fixture_path(fixtures, "shapes_elf_debug")
    corrupt = tmp_path / "broken.debug"
    shutil.copyfile(fixture_path(fixtures, "corrupt_debug"), corrupt)
    unsupported = fixture_path(fixtures, "riscv_elf")

    result = sentry_cli.upload("default", project, good, corrupt, unsupported)

    assert result.returncode == 1, result.stdout + result.stderr
    assert (fixtures["shapes_elf_debug"]["debug_id"], "shapes.debug", "x86_64") in _ok_lines(
        result.stdout
    )
    errors = {match.group(1) for match in _ERROR_LINE.finditer(result.stdout)}
    assert errors == {"broken.debug", "crash.riscv64"}, result.stdout
    assert "Invalid debug information file" in result.stdout
    assert "corrupted dwarf debug data" in result.stdout
    assert "Unsupported debug information file" in result.stdout
    assert "architecture is unknown" in result.stdout


def test_uploaded_file_downloads_byte_for_byte(
    server: ServerProcess, sentry_cli: SentryCli, fixtures: dict[str, Any], project: str
) -> None:
    path = fixture_path(fixtures, "crash_pdb")
    assert sentry_cli.upload("default", project, path).returncode == 0
    with server.client() as client:
        listed = client.get(f"/api/0/projects/default/{project}/files/dsyms/").json()
        assert len(listed) == 1
        download = client.get(
            f"/api/0/projects/default/{project}/files/dsyms/", params={"id": listed[0]["id"]}
        )
    assert download.status_code == 200
    assert download.content == path.read_bytes()
    assert download.headers["content-type"] == "application/octet-stream"
    assert 'filename="crash.pdb"' in download.headers["content-disposition"]


def test_health_and_metrics(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthcheck").text == "ok"
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.status_code == 200
    assert "symvault_http_requests_total" in metrics.text
