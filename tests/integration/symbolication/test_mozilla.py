"""Mozilla's `POST /symbolicate/v5` on the server's configured sources (a store project)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.symbolication.conftest import CONFIGURED_PROJECT, upload
from tests.support.server import ServerProcess
from tests.support.stacktraces import expected_function, probes_of


def breakpad_id(debug_id: str) -> str:
    """The form Firefox sends: GUID in upper hex without dashes, then the age."""
    guid, age = debug_id[:36], debug_id[37:] or "0"
    return guid.replace("-", "").upper() + age


@pytest.fixture(scope="module")
def uploaded(configured_server: ServerProcess, fixtures: dict[str, Any]) -> str:
    return upload(
        configured_server,
        fixtures,
        CONFIGURED_PROJECT,
        ("crash_elf", "crash_elf_debug", "shapes_elf", "shapes_elf_debug"),
    )


@pytest.fixture
def anonymous(configured_server: ServerProcess, uploaded: str) -> Iterator[httpx.Client]:
    """The Mozilla API takes no token: its sources are the server's own."""
    with httpx.Client(base_url=configured_server.url, timeout=60) as http:
        yield http


def v5(client: httpx.Client, payload: Any) -> dict[str, Any]:
    response = client.post("/symbolicate/v5", json=payload)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_frames_functions_lines_and_inlines(
    anonymous: httpx.Client, fixtures: dict[str, Any]
) -> None:
    crash_id = breakpad_id(fixtures["crash_elf"]["debug_id"])
    probes = probes_of(fixtures, "crash_elf")
    crash = fixtures["crash_addresses"]["crash_elf"]
    offsets = [int(crash["address"], 16)] + [int(p["return_address"], 16) - 1 for p in probes]
    result = v5(
        anonymous,
        {
            "jobs": [
                {
                    "memoryMap": [["crash", crash_id]],
                    "stacks": [[[0, offset] for offset in offsets]],
                }
            ]
        },
    )
    (job,) = result["results"]
    assert job["found_modules"] == {f"crash/{crash_id}": True}
    (stack,) = job["stacks"]
    wanted = [crash["frames"]] + [probe["frames"] for probe in probes]
    for index, (frame, chain, offset) in enumerate(zip(stack, wanted, offsets, strict=True)):
        outer = chain[-1]
        assert frame["frame"] == index
        assert frame["module"] == "crash"
        assert frame["module_offset"] == hex(offset)
        assert frame["function"] == outer["function"]
        assert frame["function_offset"] == hex(offset - int(outer["sym_addr"], 16))
        assert frame["file"] == outer["file"]
        assert frame["line"] == outer["line"]
        inlines = [
            {"function": inline["function"], "file": inline["file"], "line": inline["line"]}
            for inline in chain[:-1]
        ]
        assert frame.get("inlines", []) == inlines


def test_several_jobs_and_modules(anonymous: httpx.Client, fixtures: dict[str, Any]) -> None:
    crash_id = breakpad_id(fixtures["crash_elf"]["debug_id"])
    shapes_id = breakpad_id(fixtures["shapes_elf"]["debug_id"])
    unknown_id = "0123456789ABCDEF0123456789ABCDEF0"
    shapes_probe = probes_of(fixtures, "shapes_elf")[0]
    payload = {
        "jobs": [
            {
                "memoryMap": [["shapes", shapes_id], ["libmissing.so", unknown_id]],
                "stacks": [
                    [[0, int(shapes_probe["return_address"], 16) - 1], [1, 0x10], [-1, 0x1234]]
                ],
            },
            {"memoryMap": [["crash", crash_id], ["unused", unknown_id]], "stacks": [[[0, 0x10]]]},
        ]
    }
    first, second = v5(anonymous, payload)["results"]
    shapes_frame, missing_frame, unknown_frame = first["stacks"][0]
    assert shapes_frame["function"] == expected_function(shapes_probe["frames"][-1])
    assert shapes_frame["line"] == shapes_probe["frames"][-1]["line"]
    assert missing_frame == {"frame": 1, "module": "libmissing.so", "module_offset": "0x10"}
    assert unknown_frame == {"frame": 2, "module": "<unknown>", "module_offset": "0x1234"}
    assert first["found_modules"] == {
        f"shapes/{shapes_id}": True,
        f"libmissing.so/{unknown_id}": False,
    }
    # The ELF header has no function: the frame keeps only its position.
    assert second["stacks"] == [[{"frame": 0, "module": "crash", "module_offset": "0x10"}]]
    assert second["found_modules"] == {f"crash/{crash_id}": True, f"unused/{unknown_id}": None}


def test_found_modules_are_per_job(anonymous: httpx.Client, fixtures: dict[str, Any]) -> None:
    """A module looked up for one job is not reported as looked up for another."""
    crash_id = breakpad_id(fixtures["crash_elf"]["debug_id"])
    unknown_id = "0123456789ABCDEF0123456789ABCDEF0"
    memory_map = [["crash", crash_id], ["libmissing.so", unknown_id]]
    payload = {
        "jobs": [
            {"memoryMap": memory_map, "stacks": [[[0, 0x1131], [1, 0x10]]]},
            {"memoryMap": memory_map, "stacks": [[[-1, 0x10]]]},
        ]
    }
    first, second = v5(anonymous, payload)["results"]
    assert first["found_modules"] == {
        f"crash/{crash_id}": True,
        f"libmissing.so/{unknown_id}": False,
    }
    assert second["found_modules"] == {
        f"crash/{crash_id}": None,
        f"libmissing.so/{unknown_id}": None,
    }


def test_a_single_job_without_the_jobs_list(
    anonymous: httpx.Client, fixtures: dict[str, Any]
) -> None:
    crash_id = breakpad_id(fixtures["crash_elf"]["debug_id"])
    result = v5(anonymous, {"memoryMap": [["crash", crash_id]], "stacks": [[[0, 0x1131]]]})
    assert result["results"][0]["stacks"][0][0]["function"] == "crash_leaf_store"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "Payload must be a JSON object"),
        ({"jobs": "x"}, "jobs must be a list"),
        ({"jobs": [{"memoryMap": [], "stacks": [[]]}] * 11}, "limit number of jobs"),
        ({"jobs": [{"memoryMap": []}]}, "job 0 is invalid: no stacks specified"),
        ({"jobs": [{"stacks": [[]]}]}, "job 0 is invalid: no memoryMap specified"),
        ({"jobs": [{"memoryMap": [["a.so"]], "stacks": [[]]}]}, "module index 0"),
        (
            {"jobs": [{"memoryMap": [["../etc/passwd", "ABC"]], "stacks": [[]]}]},
            "invalid debug_filename",
        ),
        ({"jobs": [{"memoryMap": [["a.so", "XYZ"]], "stacks": [[]]}]}, "invalid debug_id"),
        ({"jobs": [{"memoryMap": [], "stacks": []}]}, "invalid stacks"),
        ({"jobs": [{"memoryMap": [], "stacks": [[[0, 16]]]}]}, "invalid module_index"),
        (
            {"jobs": [{"memoryMap": [["a.so", "AB"]], "stacks": [[[0, "16"]]]}]},
            "invalid module_offset",
        ),
        ({"jobs": [{"memoryMap": [], "stacks": [[[0]]]}]}, "is not a list of two items"),
    ],
)
def test_invalid_payloads(anonymous: httpx.Client, payload: Any, message: str) -> None:
    response = anonymous.post("/symbolicate/v5", json=payload)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_invalid_json(anonymous: httpx.Client) -> None:
    response = anonymous.post(
        "/symbolicate/v5", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
