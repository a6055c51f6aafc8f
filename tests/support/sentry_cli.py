"""Runs the real `sentry-cli` from the test environment against a server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SentryCli"]


def _binary() -> str:
    beside_python = Path(sys.executable).parent / "sentry-cli"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("sentry-cli")
    if found is None:
        raise RuntimeError("sentry-cli is not installed (it is a dev dependency)")
    return found


class SentryCli:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SENTRY_LOG_LEVEL": "warn",
            "SENTRY_DISABLE_UPDATE_CHECK": "1",
            "SENTRY_NO_PROGRESS_BAR": "1",
        }
        env.pop("SENTRY_AUTH_TOKEN", None)
        env.pop("SENTRY_URL", None)
        return subprocess.run(
            [_binary(), "--url", self.url, "--auth-token", self.token, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=timeout,
            check=False,
        )

    def upload(
        self, org: str, project: str, *paths: Path | str, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "debug-files",
            "upload",
            "--org",
            org,
            "--project",
            project,
            "--wait",
            *extra,
            *(str(path) for path in paths),
        )
