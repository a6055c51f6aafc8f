"""Runs `symvault serve` as a real subprocess on a free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["ServerProcess", "free_port", "server_environment"]

_TOKEN = re.compile(r"^\s{4}([0-9a-f]{64})\s*$", re.MULTILINE)
#: Where server processes keep compiled bytecode (see `server_environment`).
_PYCACHE = Path(tempfile.gettempdir()) / "symvault-test-pycache"


def server_environment() -> dict[str, str]:
    """This environment, unbuffered, with a bytecode cache outside the project.

    Where PYTHONDONTWRITEBYTECODE is set and the environment holds no .pyc files, every
    server process and each of its fetch processes would compile every module it
    imports (seconds per start); installed services have their bytecode compiled."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": str(_PYCACHE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _gauge(metrics: str, name: str) -> int:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A symvault server with its own data directory and configuration."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = data_dir.parent / f"{data_dir.name}.yml"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.config_path.write_text(yaml.safe_dump(config or {}))
        self.process: subprocess.Popen[bytes] | None = None
        self.token: str | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "symvault",
                "serve",
                "--config",
                str(self.config_path),
                "--data-dir",
                str(self.data_dir),
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start:\n{self.log()}")
        if self.token is None:
            match = _TOKEN.search(self.log())
            if match is None:
                raise RuntimeError(f"no admin token in the server output:\n{self.log()}")
            self.token = match.group(1)

    def wait_for_fetch_processes(self, timeout: float = 60.0) -> int:
        """Waits until the fetch processes are ready (they start in the background);
        how many run."""
        deadline = time.monotonic() + timeout
        running = 0
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{self.url}/metrics", timeout=5).text
            running = _gauge(metrics, "symvault_fetch_processes")
            if running >= _gauge(metrics, "symvault_fetch_processes_configured"):
                break
            time.sleep(0.05)
        return running

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Ends the server at once, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def create_token(self, org: str, project: str | None = None, *scopes: str) -> str:
        """Creates a token with the real `symvault token create` command."""
        command = [
            sys.executable,
            "-m",
            "symvault",
            "token",
            "create",
            "--config",
            str(self.config_path),
            "--data-dir",
            str(self.data_dir),
            "--org",
            org,
        ]
        if project:
            command += ["--project", project]
        for scope in scopes:
            command += ["--scope", scope]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {}
        if token is not None or self.token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)
