"""Uploading a code file and its debug companion in one sentry-cli run.

The store precomputes the symcache of each file as it is recorded; whatever the
order in which the two are assembled and precomputed, requests must get the
companion's debug information (files and lines), not the code file's symbol table.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess
from tests.support.stacktraces import crash_frame, module_of, store_source, symbolicate

BASE = 0x5555_5555_4000


def wait_until_idle(client: httpx.Client, seconds: float = 30) -> None:
    """Until the server's precompute queue has drained (its computations stop counting up)."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        metrics = client.get("/metrics").text
        counted = [line for line in metrics.splitlines() if "cache_computations_total{" in line]
        if counted == last:
            return
        last = counted
        time.sleep(0.5)


@pytest.mark.parametrize("attempt", range(3))
def test_one_run_with_code_file_and_companion(
    server: ServerProcess, client: httpx.Client, fixtures: dict[str, Any], attempt: int
) -> None:
    assert server.token is not None
    project = f"together-{attempt}"
    cli = SentryCli(server.url, server.token)
    result = cli.upload(
        "default",
        project,
        fixture_path(fixtures, "shapes_elf"),
        fixture_path(fixtures, "shapes_elf_debug"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until_idle(client)
    body = {
        "sources": [store_source("default", project)],
        "modules": [module_of(fixtures, "shapes_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "shapes_elf", BASE)]}],
    }
    response = symbolicate(client, body)
    (module,) = response["modules"]
    assert module["debug_status"] == "found"
    assert module["features"]["has_debug_info"] is True, module
    frame = response["stacktraces"][0]["frames"][0]
    assert frame["status"] == "symbolicated"
    assert frame["lineno"] > 0, frame
    assert frame["abs_path"].endswith("shapes.cpp"), frame
