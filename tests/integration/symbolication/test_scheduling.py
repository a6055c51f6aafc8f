"""Where `Symbolicator.symbolicate_async` runs a request's steps.

Built in-process from a configuration, with a filesystem source holding a real
debug file: small requests start on the calling thread (the event loop), large
ones on the CPU executor, and both give the same answer. Downloads, conversions
and file reads never run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from symvault.app import Services, build_services
from symvault.config import load_config
from symvault.model.symbolication import parse_request
from tests.conftest import fixture_path
from tests.support.stacktraces import crash_frame, module_of, probe_frames
from tests.support.symbol_server import SymbolServer

BASE = 0x5555_0000_0000


class CountingExecutor(ThreadPoolExecutor):
    """A one-thread executor that counts the work it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="counted")
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def place_debug_file(fixtures: dict[str, Any], key: str, root: Path) -> str:
    """Copies `key`'s debug companion where the native layout looks for it; its path."""
    code_id = fixtures[key]["code_id"]
    relative = f"{code_id[:2]}/{code_id[2:]}.debug"
    target = root / relative
    target.parent.mkdir(parents=True)
    shutil.copyfile(fixture_path(fixtures, f"{key}_debug"), target)
    return relative


@contextlib.contextmanager
def built_services(settings: dict[str, Any]) -> Iterator[Services]:
    built = build_services(load_config(None, settings))
    try:
        yield built
    finally:
        built.symbolicator.close()
        built.caches.close()
        built.db.dispose()


@pytest.fixture
def services(fixtures: dict[str, Any], tmp_path: Path) -> Iterator[Services]:
    place_debug_file(fixtures, "crash_elf", tmp_path / "symbols")
    settings = {
        "data_dir": str(tmp_path / "data"),
        "symbolication.inline_frames": 16,
        "sources": [{"type": "filesystem", "id": "local", "path": str(tmp_path / "symbols")}],
    }
    with built_services(settings) as built:
        yield built


def request(fixtures: dict[str, Any], copies: int) -> dict[str, Any]:
    frames = [crash_frame(fixtures, "crash_elf", BASE)]
    frames += probe_frames(fixtures, "crash_elf", BASE) * copies
    return {
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": frames}],
        "options": {"apply_source_context": False},
    }


def run(services: Services, body: dict[str, Any], cpu: CountingExecutor) -> dict[str, Any]:
    parsed = parse_request(body)
    symbolicator = services.symbolicator
    sources = services.config.sources
    return asyncio.run(symbolicator.symbolicate_async(parsed, sources, "global", cpu))


def test_small_warm_requests_stay_on_the_calling_thread(
    services: Services, fixtures: dict[str, Any]
) -> None:
    body = request(fixtures, 1)
    assert len(body["stacktraces"][0]["frames"]) <= 16
    cold, warm = CountingExecutor(), CountingExecutor()
    with cold, warm:
        first = run(services, body, cold)
        # Cold: the symcache is computed on the fetch pool, the step after it on the CPU
        # executor; the first step (nothing but memory) ran on the calling thread.
        assert cold.submitted == 1
        second = run(services, body, warm)
        assert warm.submitted == 0
    assert first == second
    assert first["modules"][0]["debug_status"] == "found"
    assert first["stacktraces"][0]["frames"][0]["function"] == "crash_leaf_store"


def test_large_requests_go_to_the_executor(services: Services, fixtures: dict[str, Any]) -> None:
    small = run(services, request(fixtures, 1), CountingExecutor())
    body = request(fixtures, 4)
    assert len(body["stacktraces"][0]["frames"]) > 16
    with CountingExecutor() as cpu:
        large = run(services, body, cpu)
        assert cpu.submitted == 1
    frames = large["stacktraces"][0]["frames"]
    # The same frames, repeated: memoized lookups give the same answers as fresh ones.
    probes = small["stacktraces"][0]["frames"][1:]
    assert [f["function"] for f in frames[1:]] == [f["function"] for f in probes] * 4
    assert [f["original_index"] for f in frames[: len(small["stacktraces"][0]["frames"])]] == [
        f["original_index"] for f in small["stacktraces"][0]["frames"]
    ]


def test_fetches_never_run_on_the_event_loop(services: Services, fixtures: dict[str, Any]) -> None:
    fetch_threads: list[int] = []
    original = services.symbolicator._fetch_one

    def recording(*args: Any, **kwargs: Any) -> None:
        fetch_threads.append(threading.get_ident())
        original(*args, **kwargs)

    services.symbolicator._fetch_one = recording  # type: ignore[method-assign]
    body = request(fixtures, 1)
    main = threading.get_ident()
    with CountingExecutor() as cpu:
        run(services, body, cpu)
    assert fetch_threads
    assert main not in fetch_threads


@pytest.mark.parametrize(
    ("fetch_processes", "first"),
    [(0, "crash_elf"), (1, "shapes_elf")],
    ids=["in-process-smaller-first", "fetch-process-larger-first"],
)
def test_fetch_order_by_image_size(
    fixtures: dict[str, Any], tmp_path: Path, fetch_processes: int, first: str
) -> None:
    """With one fetch thread (and at most one fetch process) the order is visible at the
    symbol server. In-process, smaller images first: the request lists the larger image
    first, its file is asked for last. With fetch processes, larger images first: the
    large one gets a process to itself while the small ones share the others."""
    small, large = fixtures["crash_elf"], fixtures["shapes_elf"]
    assert small["image_size"] < large["image_size"]
    root = tmp_path / "symbols"
    paths = {key: place_debug_file(fixtures, key, root) for key in ("crash_elf", "shapes_elf")}
    with SymbolServer(root=root) as symbols:
        settings = {
            "data_dir": str(tmp_path / "data"),
            "connect_to_reserved_ips": True,
            "symbolication.fetch_threads": 1,
            "symbolication.fetch_processes": fetch_processes,
            "sources": [{"type": "http", "id": "symbols", "url": symbols.url}],
        }
        other = BASE + 0x1000_0000
        body = {
            "modules": [
                module_of(fixtures, "shapes_elf", other),
                module_of(fixtures, "crash_elf", BASE),
            ],
            "stacktraces": [
                {
                    "frames": [
                        *probe_frames(fixtures, "shapes_elf", other),
                        crash_frame(fixtures, "crash_elf", BASE),
                    ]
                }
            ],
            "options": {"apply_source_context": False},
        }
        with built_services(settings) as built, CountingExecutor() as cpu:
            children = built.fetch_children
            if children is not None:
                children.start()
                assert children.wait_started(60) == fetch_processes
            try:
                result = run(built, body, cpu)
            finally:
                if children is not None:
                    children.close()
        asked = [request.path for request in symbols.requests]
    assert [module["debug_status"] for module in result["modules"]] == ["found", "found"]
    later = "shapes_elf" if first == "crash_elf" else "crash_elf"
    assert asked.index(paths[first]) < asked.index(paths[later]), asked
