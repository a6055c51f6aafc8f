"""Source context from source bundles made by the real sentry-cli.

The bundle holds the fixture sources; every symbolicated frame must get the
lines around its line from the real source file: up to 5 before, the line,
up to 5 after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.integration.symbolication.conftest import upload
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess
from tests.support.stacktraces import (
    crash_frame,
    module_of,
    native_debug_path,
    probe_frames,
    store_source,
    symbolicate,
)
from tests.support.symbol_server import SymbolServer

BASE = 0x7F00_0000_0000
CONTEXT_KEYS = ("pre_context", "context_line", "post_context")


def build_request(fixtures: dict[str, Any], project: str, **options: Any) -> dict[str, Any]:
    return {
        "sources": [store_source("default", project)],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [
            {
                "frames": [
                    crash_frame(fixtures, "crash_elf", BASE),
                    *probe_frames(fixtures, "crash_elf", BASE),
                ]
            }
        ],
        "options": options,
    }


def expected_context(path: str, lineno: int) -> dict[str, Any]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    index = lineno - 1
    context: dict[str, Any] = {
        "pre_context": lines[max(index - 5, 0) : index],
        "context_line": lines[index],
        "post_context": lines[index + 1 : index + 6],
    }
    return {key: value for key, value in context.items() if value}


def make_bundle(server: ServerProcess, fixtures: dict[str, Any], out_dir: Path) -> Path:
    """A source bundle of crash.debug, made by `sentry-cli debug-files bundle-sources`."""
    assert server.token is not None
    made = SentryCli(server.url, server.token).run(
        "debug-files",
        "bundle-sources",
        str(fixture_path(fixtures, "crash_elf_debug")),
        "-o",
        str(out_dir),
    )
    assert made.returncode == 0, made.stderr
    (bundle,) = out_dir.glob("*.src.zip")
    return bundle


@pytest.fixture(scope="module")
def include_sources_project(server: ServerProcess, fixtures: dict[str, Any]) -> str:
    """crash and crash.debug uploaded with `--include-sources`."""
    return upload(
        server,
        fixtures,
        "sym-include-sources",
        ("crash_elf", "crash_elf_debug"),
        extra=("--include-sources",),
    )


@pytest.fixture(scope="module")
def bundle_project(
    server: ServerProcess, fixtures: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """crash.debug and a bundle made by `sentry-cli debug-files bundle-sources`."""
    bundle = make_bundle(server, fixtures, tmp_path_factory.mktemp("bundle"))
    return upload(server, fixtures, "sym-bundle-sources", ("crash_elf_debug",), paths=(bundle,))


@pytest.mark.parametrize("project_fixture", ["include_sources_project", "bundle_project"])
def test_frames_get_the_lines_around_them(
    client: httpx.Client,
    fixtures: dict[str, Any],
    request: pytest.FixtureRequest,
    project_fixture: str,
) -> None:
    project = request.getfixturevalue(project_fixture)
    result = symbolicate(client, build_request(fixtures, project))
    frames = result["stacktraces"][0]["frames"]
    assert len(frames) == 10  # a crashing frame, 5 callers, two of them with 2 inlinees
    for frame in frames:
        assert frame["status"] == "symbolicated"
        context = {key: frame[key] for key in CONTEXT_KEYS if key in frame}
        assert context == expected_context(frame["abs_path"], frame["lineno"]), frame
    # main calls at line 32 of 33: one line after it; the crash site has a full window.
    main = frames[-1]
    assert main["context_line"] == "    return crash_dispatch(argc) == 0x1234 ? 1 : 0;"
    assert main["post_context"] == ["}"]
    crash = frames[0]
    assert crash["context_line"] == "    if (value == 0x7fffffff) {"
    assert len(crash["pre_context"]) == 5
    assert len(crash["post_context"]) == 5
    # Context sits where Symbolicator puts it: after lineno, before anything else.
    keys = list(crash)
    assert keys.index("lineno") < keys.index("pre_context") < keys.index("context_line")
    assert keys.index("context_line") < keys.index("post_context")
    (module,) = result["modules"]
    assert module["debug_status"] == "found"
    assert module["features"]["has_sources"] is True
    assert module["features"]["has_debug_info"] is True


def test_apply_source_context_false_gives_no_lines(
    client: httpx.Client, fixtures: dict[str, Any], include_sources_project: str
) -> None:
    body = build_request(fixtures, include_sources_project, apply_source_context=False)
    result = symbolicate(client, body)
    frames = result["stacktraces"][0]["frames"]
    assert all(frame["status"] == "symbolicated" for frame in frames)
    assert not any(key in frame for frame in frames for key in CONTEXT_KEYS)
    (module,) = result["modules"]
    assert module["features"]["has_sources"] is False


def test_no_bundle_no_lines(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    result = symbolicate(client, build_request(fixtures, formats_project))
    frames = result["stacktraces"][0]["frames"]
    assert all(frame["status"] == "symbolicated" for frame in frames)
    assert not any(key in frame for frame in frames for key in CONTEXT_KEYS)
    assert result["modules"][0]["features"]["has_sources"] is False


def test_context_sent_by_the_client_is_replaced(
    client: httpx.Client, fixtures: dict[str, Any], include_sources_project: str
) -> None:
    body = build_request(fixtures, include_sources_project)
    body["stacktraces"][0]["frames"] = [
        {**body["stacktraces"][0]["frames"][0], "context_line": "stale", "pre_context": ["x"]}
    ]
    (frame,) = symbolicate(client, body)["stacktraces"][0]["frames"]
    assert frame["context_line"] == "    if (value == 0x7fffffff) {"
    assert frame["pre_context"][-1] == "    *slot = value;"

    body["options"] = {"apply_source_context": False}
    (frame,) = symbolicate(client, body)["stacktraces"][0]["frames"]
    assert "context_line" not in frame
    assert "pre_context" not in frame


def test_bundle_next_to_the_debug_file_on_a_symbol_server(
    configured_server: ServerProcess,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    tmp_path: Path,
) -> None:
    """A `.src.zip` where the source's layout puts it, beside the debug file."""
    bundle = make_bundle(configured_server, fixtures, tmp_path)
    debug_path = "src-zip/" + native_debug_path(fixtures, "crash_elf")
    bundle_path = debug_path.removesuffix(".debug") + ".src.zip"
    symbol_server.put(debug_path, fixture_path(fixtures, "crash_elf_debug").read_bytes())
    symbol_server.put(bundle_path, bundle.read_bytes())
    body = build_request(fixtures, "unused")
    body["sources"] = [{"type": "http", "id": "symbols", "url": symbol_server.url_for("src-zip/")}]
    with configured_server.client() as client:
        result = symbolicate(client, body)
    assert symbol_server.hits[bundle_path] == 1
    frames = result["stacktraces"][0]["frames"]
    assert len(frames) == 10
    for frame in frames:
        assert frame["status"] == "symbolicated"
        context = {key: frame[key] for key in CONTEXT_KEYS if key in frame}
        assert context == expected_context(frame["abs_path"], frame["lineno"]), frame
    assert result["modules"][0]["features"]["has_sources"] is True
