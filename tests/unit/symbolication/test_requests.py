"""The request lifecycle (`symbolication/requests.py`) with short durations."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from symvault.errors import NotFound, ServiceUnavailable
from symvault.symbolication.requests import RETRY_AFTER, RequestRegistry

Work = Callable[[], Awaitable[dict[str, Any]]]


def after(seconds: float, result: dict[str, Any] | None = None) -> Work:
    async def work() -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return result or {"status": "completed", "took": seconds}

    return work


def registry(**overrides: Any) -> RequestRegistry:
    settings: dict[str, Any] = {"max_concurrent": 10, "retention": 60.0, "max_duration": 60.0}
    settings.update(overrides)
    return RequestRegistry(**settings)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_waiting_without_a_timeout_gives_the_result() -> None:
    async def test() -> None:
        requests = registry()
        request_id = requests.start(after(0.05))
        assert str(uuid.UUID(request_id)) == request_id
        assert await requests.respond(request_id, None) == {"status": "completed", "took": 0.05}

    run(test)


def test_pending_then_completed_then_pollable_again() -> None:
    async def test() -> None:
        requests = registry()
        request_id = requests.start(after(0.3))
        pending = {"status": "pending", "request_id": request_id, "retry_after": RETRY_AFTER}
        assert await requests.respond(request_id, 0) == pending
        assert await requests.respond(request_id, 0.05) == pending
        # Giving up on a poll does not cancel the work.
        assert await requests.respond(request_id, 5) == {"status": "completed", "took": 0.3}
        for timeout in (None, 0, 1):
            assert await requests.respond(request_id, timeout) == {
                "status": "completed",
                "took": 0.3,
            }

    run(test)


def test_failures_are_reported() -> None:
    class Broken(Exception):
        pass

    async def fails(message: str) -> dict[str, Any]:
        raise Broken(message)

    async def test() -> None:
        requests = registry()
        failed = requests.start(lambda: fails("symcache exploded"))
        assert await requests.respond(failed, None) == {
            "status": "failed",
            "message": "symcache exploded",
        }
        nameless = requests.start(lambda: fails(""))
        assert await requests.respond(nameless, None) == {"status": "failed", "message": "Broken"}
        assert requests.running == 0

    run(test)


def test_work_running_too_long_ends_as_timeout() -> None:
    async def test() -> None:
        requests = registry(max_duration=0.1)
        request_id = requests.start(after(5))
        started = time.monotonic()
        assert await requests.respond(request_id, None) == {"status": "timeout"}
        assert time.monotonic() - started < 2
        assert requests.running == 0

    run(test)


def test_concurrency_limit() -> None:
    async def test() -> None:
        requests = registry(max_concurrent=2)
        first = requests.start(after(0.2))
        requests.start(after(0.2))
        assert requests.running == 2
        with pytest.raises(ServiceUnavailable, match="maximum number of concurrent requests"):
            requests.start(after(0))
        assert (await requests.respond(first, 0))["status"] == "pending"
        await requests.respond(first, None)
        assert requests.running <= 1
        # The slot is free once the work is done, while the result is still kept.
        third = requests.start(after(0))
        assert (await requests.respond(third, None))["status"] == "completed"
        assert (await requests.respond(first, 0))["status"] == "completed"

    run(test)


def test_results_expire_after_their_retention() -> None:
    async def test() -> None:
        requests = registry(retention=0.1)
        request_id = requests.start(after(0.01))
        assert (await requests.respond(request_id, 0))["status"] == "pending"
        assert (await requests.respond(request_id, None))["status"] == "completed"
        await asyncio.sleep(0.05)
        assert (await requests.respond(request_id, 0))["status"] == "completed"
        await asyncio.sleep(0.1)
        with pytest.raises(NotFound):
            await requests.respond(request_id, 0)
        assert requests.kept == 0

    run(test)


def test_a_result_answered_at_once_is_not_kept() -> None:
    """Its caller never learnt the id, so nobody can poll it: nothing is kept."""

    async def test() -> None:
        requests = registry()
        request_id = requests.start(after(0.01))
        assert (await requests.respond(request_id, 5))["status"] == "completed"
        assert requests.kept == 0
        with pytest.raises(NotFound):
            await requests.respond(request_id, 0)

    run(test)


def test_a_caller_that_goes_away_leaves_nothing_behind() -> None:
    async def test() -> None:
        requests = registry()
        request_id = requests.start(after(0.1))
        waiting = asyncio.create_task(requests.respond(request_id, None))
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert requests.kept == 1  # still running
        await asyncio.sleep(0.2)
        assert requests.running == 0
        assert requests.kept == 0

    run(test)


def test_running_requests_do_not_expire() -> None:
    async def test() -> None:
        requests = registry(retention=0.01)
        request_id = requests.start(after(0.2))
        await asyncio.sleep(0.1)
        assert (await requests.respond(request_id, 0))["status"] == "pending"
        assert (await requests.respond(request_id, None))["status"] == "completed"

    run(test)


@pytest.mark.parametrize("request_id", [str(uuid.uuid4()), "nonsense", ""])
def test_unknown_ids(request_id: str) -> None:
    async def test() -> None:
        with pytest.raises(NotFound):
            await registry().respond(request_id, None)

    run(test)


class TestSharedBetweenProcesses:
    """With several server processes, a poll may reach another process than the POST."""

    def test_a_result_is_found_by_another_registry(self, tmp_path: Path) -> None:
        async def test() -> None:
            here = registry(shared_dir=tmp_path)
            there = registry(shared_dir=tmp_path)
            request_id = here.start(after(0.3))
            assert (await here.respond(request_id, 0))["status"] == "pending"
            pending = await there.respond(request_id, 0.05)
            assert pending == {
                "status": "pending",
                "request_id": request_id,
                "retry_after": RETRY_AFTER,
            }
            assert await there.respond(request_id, None) == {"status": "completed", "took": 0.3}
            assert await here.respond(request_id, 0) == {"status": "completed", "took": 0.3}
            assert not (tmp_path / f"{request_id}.pending").exists()

        run(test)

    def test_results_answered_at_once_are_not_shared(self, tmp_path: Path) -> None:
        async def test() -> None:
            here = registry(shared_dir=tmp_path)
            request_id = here.start(after(0.01))
            assert (await here.respond(request_id, None))["status"] == "completed"
            assert list(tmp_path.iterdir()) == []

        run(test)

    def test_unknown_and_invalid_ids(self, tmp_path: Path) -> None:
        async def test() -> None:
            there = registry(shared_dir=tmp_path)
            for request_id in (str(uuid.uuid4()), "../../etc/passwd", str(uuid.uuid4()).upper()):
                with pytest.raises(NotFound):
                    await there.respond(request_id, 1)

        run(test)

    def test_shared_results_expire(self, tmp_path: Path) -> None:
        async def test() -> None:
            here = registry(shared_dir=tmp_path, retention=0.5)
            there = registry(shared_dir=tmp_path, retention=0.5)
            request_id = here.start(after(0.01))
            assert (await here.respond(request_id, 0))["status"] == "pending"
            await here.respond(request_id, None)
            result = tmp_path / f"{request_id}.json"
            assert result.exists()
            old = time.time() - 10
            os.utime(result, (old, old))
            with pytest.raises(NotFound):
                await there.respond(request_id, 0)
            there.sweep_shared()
            assert not result.exists()

        run(test)

    def test_sweep_removes_markers_of_dead_requests(self, tmp_path: Path) -> None:
        requests = registry(shared_dir=tmp_path, max_duration=1.0)
        stale = tmp_path / f"{uuid.uuid4()}.pending"
        fresh = tmp_path / f"{uuid.uuid4()}.pending"
        stale.touch()
        fresh.touch()
        old = time.time() - 120
        os.utime(stale, (old, old))
        requests.sweep_shared()
        assert not stale.exists()
        assert fresh.exists()


def test_request_ids_are_distinct_random_uuids() -> None:
    async def test() -> None:
        requests = registry(max_concurrent=1000)
        ids = [requests.start(after(0)) for _ in range(600)]
        assert len(set(ids)) == 600
        for request_id in ids:
            parsed = uuid.UUID(request_id)
            assert parsed.version == 4
            assert str(parsed) == request_id
        await asyncio.gather(*(requests.respond(request_id, None) for request_id in ids))
        assert requests.kept == 0

    run(test)
