"""Downloading over HTTP: timeouts, size limits, retries, failing hosts, address checks.

One `HttpClient` is shared by all HTTP-based sources of a process. It

- connects only to addresses `AddressPolicy` allows, checking every redirect
  hop itself (redirects are followed here, at most `_MAX_REDIRECTS`), and
  connects to the address it checked, so DNS cannot be changed in between;
- maps statuses the way Symbolicator does: 401/403 -> no permission, other
  4xx -> not found, 5xx, timeouts and connection failures -> error;
- retries errors a few times with backoff, and after `host_failure_limit`
  consecutive failures of a host skips that host for `host_block_time`;
- stops downloads that exceed the size limit or the total time limit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpcore
import httpx

from symvault.logs import log_event
from symvault.sources.addresses import AddressPolicy, BlockedAddress
from symvault.sources.base import DownloadOutcome, DownloadStatus

__all__ = ["HttpClient", "HttpLimits", "HttpResponse"]

logger = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
#: How much a connection reads from its socket at a time (httpcore's default: 64 KiB).
#: Every read and the parsing after it need the interpreter lock, which downloads and
#: conversions running meanwhile hold most of the time: a 4 MB download took five dozen
#: waits for it and stretched from 10 to 60 ms in a cold request of 8 modules. Larger
#: reads make that a handful. The setting is the class's, so it holds for every
#: connection of the process; a read allocates at most this much.
_SOCKET_READ = 1024 * 1024
httpcore.HTTP11Connection.READ_NUM_BYTES = _SOCKET_READ
#: Headers that only the host they were configured for may see (as browsers and
#: Symbolicator's HTTP client do): a redirect elsewhere, such as Sentry's to a
#: signed storage URL, must not carry a source's token along.
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: The answer of `HttpClient.warm_up`: large enough to take the paths of a download's
#: body (several socket reads and file writes).
_WARM_UP_BODY = 2 * _SOCKET_READ
_WARM_UP_TIMEOUT = 5.0


@dataclass(frozen=True)
class HttpLimits:
    connect_timeout: float
    streaming_timeout: float
    """Longest wait for the response to start, or between parts of its body."""
    total_timeout: float
    """Time allowed for a whole download, including retries."""
    max_size: int
    retries: int
    host_failure_limit: int
    host_block_time: float


@dataclass(frozen=True)
class HttpResponse:
    """A small response read into memory (API calls, not file downloads)."""

    status: DownloadStatus
    body: bytes = b""
    details: str | None = None


class _HostHealth:
    """Consecutive failures per host, and until when a failing host is skipped."""

    def __init__(self, limit: int, block_time: float) -> None:
        self._limit = limit
        self._block_time = block_time
        self._failures: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, host: str) -> bool:
        with self._lock:
            until = self._blocked_until.get(host)
            if until is None:
                return False
            if until > time.monotonic():
                return True
            del self._blocked_until[host]
            self._failures.pop(host, None)
            return False

    def failed(self, host: str) -> None:
        with self._lock:
            count = self._failures.get(host, 0) + 1
            self._failures[host] = count
            if count >= self._limit:
                self._blocked_until[host] = time.monotonic() + self._block_time
                log_event(logger, "download.host_blocked", host=host, seconds=self._block_time)

    def succeeded(self, host: str) -> None:
        with self._lock:
            self._failures.pop(host, None)


class _Failure(Exception):
    def __init__(self, outcome: DownloadOutcome, retryable: bool) -> None:
        super().__init__(outcome.details)
        self.outcome = outcome
        self.retryable = retryable


class HttpClient:
    """Fetches URLs under the limits and address policy of the configuration."""

    def __init__(self, limits: HttpLimits, policy: AddressPolicy) -> None:
        self._limits = limits
        self._policy = policy
        self._health = _HostHealth(limits.host_failure_limit, limits.host_block_time)
        timeout = httpx.Timeout(
            connect=limits.connect_timeout,
            read=limits.streaming_timeout,
            write=limits.streaming_timeout,
            pool=limits.connect_timeout,
        )
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"User-Agent": "symvault"},
        )
        # For sources that set `accept_invalid_certs`, as Symbolicator allows.
        self._insecure = httpx.Client(timeout=timeout, follow_redirects=False, verify=False)  # noqa: S501

    def close(self) -> None:
        self._client.close()
        self._insecure.close()

    def warm_up(self) -> bool:
        """Downloads once from a one-shot server on a loopback socket of this process.

        The first download of a process pays for what httpx, httpcore and h11 set up
        and import on first use: 5-7 ms more than the 7 ms a 4 MB download takes
        next door. A cold request waits for its downloads, so a process pays that at
        start instead. Nothing leaves the process (the address policy is not asked);
        a failure is logged and changes nothing. True if the download went through."""
        try:
            with socket.create_server(("127.0.0.1", 0)) as listener:
                listener.settimeout(_WARM_UP_TIMEOUT)
                answering = threading.Thread(
                    target=_answer_once, args=(listener,), name="http-warm-up", daemon=True
                )
                answering.start()
                port = listener.getsockname()[1]
                target = httpx.URL(f"http://localhost:{port}/warm-up")
                request = self._request_to(target, "127.0.0.1", {})
                # Not the sources' timeouts (minutes): another local process that takes
                # the one connection `_answer_once` accepts must not hold up the start.
                request.extensions["timeout"] = httpx.Timeout(_WARM_UP_TIMEOUT).as_dict()
                response = self._client.send(request, stream=True)
                try:
                    deadline = time.monotonic() + _WARM_UP_TIMEOUT
                    self._read(response, Path(os.devnull), deadline, _WARM_UP_BODY)
                finally:
                    response.close()
                answering.join(_WARM_UP_TIMEOUT)
        except (OSError, httpx.HTTPError, _Failure) as exc:
            log_event(logger, "http.warm_up_failed", logging.WARNING, error=str(exc))
            return False
        return True

    def download(
        self,
        url: str,
        destination: Path,
        headers: Mapping[str, str] | None = None,
        verify: bool = True,
    ) -> DownloadOutcome:
        """Streams `url` into `destination`; never raises for network trouble."""
        outcome, _ = self._with_retries(url, headers or {}, verify, destination)
        return outcome

    def fetch(
        self, url: str, headers: Mapping[str, str] | None = None, max_size: int = 16 * 1024**2
    ) -> HttpResponse:
        """Reads a small response into memory (for API calls such as Sentry's listing)."""
        outcome, body = self._with_retries(url, headers or {}, True, None, max_size)
        return HttpResponse(outcome.status, body, outcome.details)

    def _with_retries(
        self,
        url: str,
        headers: Mapping[str, str],
        verify: bool,
        destination: Path | None,
        max_size: int | None = None,
    ) -> tuple[DownloadOutcome, bytes]:
        deadline = time.monotonic() + self._limits.total_timeout
        host = httpx.URL(url).host
        attempt = 0
        while True:
            if self._health.blocked(host):
                skipped = _error(f"{host} is skipped for a while after repeated failures")
                return skipped, b""
            try:
                body = self._attempt(url, headers, verify, destination, deadline, max_size)
            except _Failure as failure:
                if failure.retryable:
                    self._health.failed(host)
                if not failure.retryable or attempt >= self._limits.retries:
                    return failure.outcome, b""
                backoff = min(0.2 * 2**attempt, 2.0)
                if time.monotonic() + backoff >= deadline:
                    return failure.outcome, b""
                time.sleep(backoff)
                attempt += 1
                continue
            self._health.succeeded(host)
            return DownloadOutcome(DownloadStatus.OK), body

    def _attempt(
        self,
        url: str,
        headers: Mapping[str, str],
        verify: bool,
        destination: Path | None,
        deadline: float,
        max_size: int | None,
    ) -> bytes:
        """One attempt, following redirects; the body if not written to `destination`."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._guarded_request(current, headers)
            client = self._client if verify else self._insecure
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectTimeout as exc:
                raise _Failure(_error(f"timed out connecting to {request.url.host}"), True) from exc
            except httpx.TimeoutException as exc:
                message = f"timed out waiting for {request.url.host} to answer"
                raise _Failure(_error(message), True) from exc
            except httpx.HTTPError as exc:
                raise _Failure(_error(f"cannot reach {request.url.host}: {exc}"), True) from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise _Failure(_error("redirect without a Location header"), False)
                    target = urljoin(current, location)
                    if _origin(target) != _origin(current):
                        headers = {
                            name: value
                            for name, value in headers.items()
                            if name.lower() not in _CREDENTIALS
                        }
                    current = target
                    continue
                return self._read(response, destination, deadline, max_size)
            finally:
                response.close()
        raise _Failure(_error(f"more than {_MAX_REDIRECTS} redirects"), False)

    def _guarded_request(self, url: str, headers: Mapping[str, str]) -> httpx.Request:
        target = httpx.URL(url)
        if target.scheme not in ("http", "https"):
            raise _Failure(_error(f"unsupported URL scheme {target.scheme!r}"), False)
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            address = self._policy.resolve(target.host, port)
        except BlockedAddress as exc:
            raise _Failure(_error(str(exc)), False) from exc
        except OSError as exc:
            raise _Failure(_error(f"cannot resolve {target.host}: {exc}"), True) from exc
        return self._request_to(target, address, headers)

    def _request_to(
        self, target: httpx.URL, address: str, headers: Mapping[str, str]
    ) -> httpx.Request:
        """A GET of `target` that connects to `address` (one that was checked) and keeps
        the name for Host and TLS."""
        request_headers = {
            "Accept-Encoding": "gzip",
            **headers,
            "Host": target.netloc.decode("ascii"),
        }
        return self._client.build_request(
            "GET",
            target.copy_with(host=address),
            headers=request_headers,
            extensions={"sni_hostname": target.host},
        )

    def _read(
        self,
        response: httpx.Response,
        destination: Path | None,
        deadline: float,
        max_size: int | None,
    ) -> bytes:
        status = response.status_code
        if status in (401, 403):
            raise _Failure(DownloadOutcome(DownloadStatus.NO_PERMISSION, f"HTTP {status}"), False)
        if 400 <= status < 500:
            raise _Failure(DownloadOutcome(DownloadStatus.NOT_FOUND, f"HTTP {status}"), False)
        if not 200 <= status < 300:
            raise _Failure(_error(f"HTTP {status}"), True)
        limit = self._limits.max_size if max_size is None else max_size
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Failure(_error(f"file is larger than the limit of {limit} bytes"), False)
        # Files are stored as sent (compression is sniffed later); API bodies are decoded.
        # Blocks as they arrive: re-chunking them would copy every byte once more.
        blocks = response.iter_raw() if destination is not None else response.iter_bytes()
        received = 0
        body = bytearray()
        try:
            with destination.open("wb") if destination is not None else _NullWriter() as out:
                for block in blocks:
                    received += len(block)
                    if received > limit:
                        raise _Failure(
                            _error(f"file is larger than the limit of {limit} bytes"), False
                        )
                    if time.monotonic() > deadline:
                        raise _Failure(_error("timed out: the download took too long"), True)
                    if destination is not None:
                        out.write(block)
                    else:
                        body += block
        except httpx.TimeoutException as exc:
            raise _Failure(_error("timed out: the download stalled"), True) from exc
        except httpx.HTTPError as exc:
            raise _Failure(_error(f"the download broke off: {exc}"), True) from exc
        return bytes(body)


class _NullWriter:
    def __enter__(self) -> _NullWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        return len(data)


def _answer_once(listener: socket.socket) -> None:
    """Answers the first connection to `listener` with `_WARM_UP_BODY` zero bytes."""
    try:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(_WARM_UP_TIMEOUT)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                received = connection.recv(4096)
                if not received:
                    return
                head += received
            status = (
                f"HTTP/1.1 200 OK\r\nContent-Length: {_WARM_UP_BODY}\r\nConnection: close\r\n\r\n"
            )
            connection.sendall(status.encode("ascii") + bytes(_WARM_UP_BODY))
    except OSError:
        return  # the client side says what went wrong


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    default = 443 if parsed.scheme == "https" else 80
    return parsed.scheme, parsed.host, parsed.port or default


def _error(details: str) -> DownloadOutcome:
    return DownloadOutcome(DownloadStatus.ERROR, details)
