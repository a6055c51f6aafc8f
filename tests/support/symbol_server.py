"""A real HTTP symbol server for tests: serves files, counts hits, misbehaves on request.

`SymbolServer` runs the standard library's `ThreadingHTTPServer` on a free port
in a thread. It serves files from a dict (`put`) or a directory, counts hits
per path, records request headers, and answers any path with a `Reply` chosen
by the test (`misbehave`): a status, a stall, garbage, a truncated body, a
redirect, a compressed body, a body without a length. `make_cab` builds a CAB
archive (`foo.pd_`) with the real `gcab` program.
"""

from __future__ import annotations

import gzip
import http.server
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import unquote, urlsplit

import zstandard

__all__ = ["RecordedRequest", "Reply", "SymbolServer", "make_cab"]

ReplyKind = Literal[
    "status", "stall", "garbage", "truncated", "redirect", "compressed", "unsized", "body"
]


@dataclass(frozen=True)
class Reply:
    """How to answer one path. Build them with the class methods."""

    kind: ReplyKind
    status_code: int = 200
    body: bytes = b""
    seconds: float = 0.0
    location: str = ""
    encoding: str = ""
    content_encoding: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    after_bytes: int | None = None
    """For stalls: how much of the body is sent before stalling (None: stall before answering)."""
    declared_length: int = 0
    """For truncated bodies: the Content-Length claimed."""

    @classmethod
    def status(cls, code: int, body: bytes = b"") -> Reply:
        return cls("status", status_code=code, body=body)

    @classmethod
    def stall(cls, seconds: float, body: bytes = b"", after_bytes: int | None = None) -> Reply:
        """Waits `seconds` before answering, or after sending `after_bytes` of `body`."""
        return cls("stall", body=body, seconds=seconds, after_bytes=after_bytes)

    @classmethod
    def garbage(cls, size: int = 4096, seed: int = 0) -> Reply:
        noise = random.Random(seed).randbytes(size)
        return cls("garbage", body=b"GARBAGE!" + noise)

    @classmethod
    def truncated(cls, body: bytes, missing: int = 4096) -> Reply:
        """Declares `missing` bytes more than it sends, then closes the connection."""
        return cls("truncated", body=body, declared_length=len(body) + missing)

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Reply:
        return cls("redirect", status_code=code, location=location)

    @classmethod
    def compressed(cls, body: bytes, encoding: str, *, content_encoding: bool = False) -> Reply:
        """`body` compressed with gzip or zstd, optionally labelled with Content-Encoding."""
        if encoding == "gzip":
            packed = gzip.compress(body)
        elif encoding == "zstd":
            packed = zstandard.ZstdCompressor().compress(body)
        else:
            raise ValueError(f"unknown encoding {encoding}")
        return cls("compressed", body=packed, encoding=encoding, content_encoding=content_encoding)

    @classmethod
    def unsized(cls, body: bytes) -> Reply:
        """`body` without a Content-Length: the end is marked by closing the connection."""
        return cls("unsized", body=body)

    @classmethod
    def file(cls, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls("body", body=body, headers=headers)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path).lstrip("/")
        owner = self.server.owner
        owner.record(RecordedRequest(path, parts.query, dict(self.headers.items())))
        reply = owner.reply_for(path)
        try:
            self._answer(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it was meant to

    def _answer(self, reply: Reply | None) -> None:
        if reply is None:
            self._send(404, b"not found")
            return
        if reply.kind == "status":
            self._send(reply.status_code, reply.body)
        elif reply.kind == "stall":
            self._stall(reply)
        elif reply.kind == "redirect":
            self.send_response(reply.status_code)
            self.send_header("Location", reply.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif reply.kind == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(reply.declared_length))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            self._hang_up()
        elif reply.kind == "unsized":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            self._hang_up()
        elif reply.kind == "compressed" and reply.content_encoding:
            self._send(200, reply.body, (("Content-Encoding", reply.encoding),))
        else:
            self._send(200, reply.body, reply.headers)

    def _stall(self, reply: Reply) -> None:
        after = reply.after_bytes
        if after is None:
            self.server.stopping.wait(reply.seconds)
            self._send(200, reply.body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body[:after])
        self.wfile.flush()
        self.server.stopping.wait(reply.seconds)
        self.wfile.write(reply.body[after:])

    def _send(self, code: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The standard library's backlog is 5: a client that opens more connections at once
    # (a cold request asks for 8 or more files together) then has SYNs dropped and waits
    # a second for the kernel's retry, a stall nobody asked this server for.
    request_queue_size = 128
    owner: SymbolServer
    stopping: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # clients hanging up on stalls are expected here


class SymbolServer:
    """A symbol server on `host` and a free port; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", root: Path | None = None) -> None:
        self.host = host
        self.root = root
        self.hits: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self._files: dict[str, bytes] = {}
        self._replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._server.stopping = threading.Event()
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, ending in a slash."""
        return f"http://{self.host}:{self.port}/"

    def url_for(self, path: str) -> str:
        return self.url + path.lstrip("/")

    def __enter__(self) -> SymbolServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # What to serve

    def put(self, path: str, data: bytes) -> None:
        with self._lock:
            self._files[path.lstrip("/")] = data

    def remove(self, path: str) -> None:
        with self._lock:
            self._files.pop(path.lstrip("/"), None)
            self._replies.pop(path.lstrip("/"), None)

    def misbehave(self, path: str, reply: Reply) -> None:
        with self._lock:
            self._replies[path.lstrip("/")] = reply

    def behave(self, path: str) -> None:
        with self._lock:
            self._replies.pop(path.lstrip("/"), None)

    def reply_for(self, path: str) -> Reply | None:
        with self._lock:
            reply = self._replies.get(path)
            if reply is None and "*" in self._replies:
                reply = self._replies["*"]
            data = self._files.get(path)
        if reply is not None:
            return reply
        if data is not None:
            return Reply.file(data)
        if self.root is not None:
            candidate = (self.root / path).resolve()
            if candidate.is_relative_to(self.root.resolve()) and candidate.is_file():
                return Reply.file(candidate.read_bytes())
        return None

    # What happened

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.hits[request.path] += 1
            self.requests.append(request)

    def hits_for(self, path: str) -> int:
        with self._lock:
            return self.hits[path.lstrip("/")]

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path.lstrip("/")]


def make_cab(name: str, data: bytes) -> bytes:
    """A CAB archive holding `data` as `name`, made by the real `gcab` (MSZIP compressed)."""
    program = shutil.which("gcab")
    if program is None:
        raise RuntimeError("gcab is not installed (apt-get install gcab cabextract)")
    with tempfile.TemporaryDirectory() as workdir:
        member = Path(workdir) / name
        member.write_bytes(data)
        archive = Path(workdir) / "archive.cab"
        subprocess.run(
            [program, "--create", "--zip", "--nopath", str(archive), str(member)],
            check=True,
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        return archive.read_bytes()
