"""The lifecycle of symbolication requests: start, wait, poll, expire.

Every request gets an id and runs as a task. The caller waits up to its
`timeout` (or until done when it gives none); if the result is not ready, it
gets `pending` with the id and polls `/requests/{id}`. The result of a request
whose id was handed out can be polled for `retention` seconds after it
finished; one answered at once is forgotten at once (its caller never learnt
the id, so nobody can ask for it again). A request running longer than
`max_duration` ends as `timeout`. At most `max_concurrent` requests run at
once; more are refused (503) until one finishes.

With several server processes (`server.workers`), the results and markers of
requests whose ids were handed out are also written to a shared directory, so
that a poll reaching another process finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from symvault.errors import NotFound, ServiceUnavailable

__all__ = ["RETRY_AFTER", "RequestRegistry"]

logger = logging.getLogger(__name__)

#: Seconds a client should wait before polling a pending request (Symbolicator's value).
RETRY_AFTER = 30
_SHARED_POLL = 0.05
_IDS_PER_DRAW = 256


@dataclass
class _Request:
    task: asyncio.Task[dict[str, Any]]
    handed_out: bool = False
    """Whether a `pending` answer told a client the id (so it may poll)."""


class RequestRegistry:
    """Runs symbolication requests and keeps their results for polling."""

    def __init__(
        self,
        max_concurrent: int,
        retention: float,
        max_duration: float,
        shared_dir: Path | None = None,
    ) -> None:
        self._max_concurrent = max_concurrent
        self._retention = retention
        self._max_duration = max_duration
        self._shared = shared_dir
        if shared_dir is not None:
            shared_dir.mkdir(parents=True, exist_ok=True)
        self._requests: dict[str, _Request] = {}
        # Handed-out requests that finished, oldest first: (monotonic time, id).
        self._finished: deque[tuple[float, str]] = deque()
        self._running = 0
        self._random = bytearray()

    def _new_id(self) -> str:
        # Random bytes are drawn for many ids at once: each draw is a system call, made
        # on the event loop's thread.
        if not self._random:
            self._random = bytearray(os.urandom(16 * _IDS_PER_DRAW))
        raw = bytes(self._random[-16:])
        del self._random[-16:]
        return str(uuid.UUID(bytes=raw, version=4))

    @property
    def running(self) -> int:
        return self._running

    @property
    def kept(self) -> int:
        """Requests known to this process: running, or finished and pollable."""
        return len(self._requests)

    def start(self, work: Callable[[], Awaitable[dict[str, Any]]]) -> str:
        """Starts a request; raises `ServiceUnavailable` when too many are running."""
        self._expire()
        if self._running >= self._max_concurrent:
            raise ServiceUnavailable("maximum number of concurrent requests reached")
        request_id = self._new_id()
        self._running += 1
        task = asyncio.create_task(self._run(request_id, work))
        self._requests[request_id] = _Request(task)
        return request_id

    async def _run(
        self, request_id: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        try:
            result = await asyncio.wait_for(work(), self._max_duration)
        except TimeoutError:
            result = {"status": "timeout"}
        except Exception as exc:
            logger.exception("symbolicate.request_failed request_id=%s", request_id)
            result = {"status": "failed", "message": str(exc) or exc.__class__.__name__}
        finally:
            self._running -= 1
        entry = self._requests.get(request_id)
        if entry is not None and entry.handed_out:
            self._finished.append((time.monotonic(), request_id))
            if self._shared is not None:
                self._publish(request_id, result)
        return result

    async def respond(self, request_id: str, timeout: float | None) -> dict[str, Any]:
        """The result, or `pending` if it is not ready within `timeout` seconds."""
        self._expire()
        entry = self._requests.get(request_id)
        if entry is None:
            return await self._respond_shared(request_id, timeout)
        try:
            if timeout is None:
                result = await asyncio.shield(entry.task)
            else:
                result = await asyncio.wait_for(asyncio.shield(entry.task), timeout)
        except asyncio.CancelledError:
            # The caller went away: without its id handed out, forget the request
            # once it is done.
            if not entry.handed_out:
                entry.task.add_done_callback(lambda _: self._forget(request_id))
            raise
        except TimeoutError:
            if not entry.task.done():
                self._hand_out(request_id, entry)
                return {"status": "pending", "request_id": request_id, "retry_after": RETRY_AFTER}
            result = entry.task.result()
        if not entry.handed_out:
            # Nobody else knows the id: nothing to keep.
            self._forget(request_id)
        return result

    def _forget(self, request_id: str) -> None:
        entry = self._requests.get(request_id)
        if entry is not None and not entry.handed_out:
            del self._requests[request_id]

    def _hand_out(self, request_id: str, entry: _Request) -> None:
        if entry.handed_out:
            return
        entry.handed_out = True
        if self._shared is not None:
            with contextlib.suppress(OSError):
                (self._shared / f"{request_id}.pending").touch()

    def _expire(self) -> None:
        limit = time.monotonic() - self._retention
        while self._finished and self._finished[0][0] < limit:
            _, request_id = self._finished.popleft()
            self._requests.pop(request_id, None)
            if self._shared is not None:
                with contextlib.suppress(OSError):
                    (self._shared / f"{request_id}.json").unlink()

    # Sharing between server processes

    def _publish(self, request_id: str, result: dict[str, Any]) -> None:
        assert self._shared is not None
        staged = self._shared / f".{request_id}.{os.getpid()}"
        try:
            staged.write_bytes(orjson.dumps(result))
            staged.replace(self._shared / f"{request_id}.json")
        except OSError:
            logger.exception("symbolicate.publish_failed request_id=%s", request_id)
        finally:
            with contextlib.suppress(OSError):
                (self._shared / f"{request_id}.pending").unlink()

    async def _respond_shared(self, request_id: str, timeout: float | None) -> dict[str, Any]:
        if self._shared is None or not _valid_id(request_id):
            raise NotFound(f"no symbolication request {request_id[:80]!r}")
        result_path = self._shared / f"{request_id}.json"
        pending_path = self._shared / f"{request_id}.pending"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                stat = result_path.stat()
            except FileNotFoundError:
                if not pending_path.exists():
                    raise NotFound(f"no symbolication request {request_id!r}") from None
            else:
                if time.time() - stat.st_mtime > self._retention:
                    raise NotFound(f"no symbolication request {request_id!r}")
                with contextlib.suppress(FileNotFoundError):
                    document: dict[str, Any] = orjson.loads(result_path.read_bytes())
                    return document
            if deadline is not None and time.monotonic() >= deadline:
                return {"status": "pending", "request_id": request_id, "retry_after": RETRY_AFTER}
            await asyncio.sleep(_SHARED_POLL)

    def sweep_shared(self) -> None:
        """Removes shared results past their retention and markers of dead requests."""
        if self._shared is None:
            return
        now = time.time()
        for path in self._shared.iterdir():
            limit = self._retention if path.suffix == ".json" else self._max_duration + 60
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > limit:
                    path.unlink()


def _valid_id(request_id: str) -> bool:
    try:
        return str(uuid.UUID(request_id)) == request_id
    except ValueError:
        return False
