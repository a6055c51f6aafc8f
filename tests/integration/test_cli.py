"""The command line as a newcomer meets it: `serve`'s first start, `token create`, `check`."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess


def symvault(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symvault", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_first_start_prints_a_command_that_uploads(
    tmp_path: Path, fixtures: dict[str, Any]
) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        (command,) = [line.strip() for line in server.log().splitlines() if "sentry-cli" in line]
        words = shlex.split(command)
        assert words[words.index("--url") + 1] == server.url + "/"
        assert words[words.index("--auth-token") + 1] == server.token
        assert "--wait" in words
        assert words[-1] == "PATH"
        # Run as printed, with a file for PATH: the project is created on first upload.
        assert server.token is not None
        cli = SentryCli(server.url, server.token)
        result = cli.run(*words[5:-1], str(fixture_path(fixtures, "crash_elf_debug")))
        assert result.returncode == 0, result.stdout + result.stderr
        debug_id = fixtures["crash_elf_debug"]["debug_id"]
        assert re.search(rf"^\s*OK {debug_id} ", result.stdout, re.MULTILINE), result.stdout
    finally:
        server.stop()
    # A second start with the same data directory creates no second token.
    first_log = server.log()
    again = ServerProcess(tmp_path / "data")
    again.token = server.token
    again.start()
    try:
        assert again.log().startswith(first_log)
        assert "sentry-cli" not in again.log()[len(first_log) :]
    finally:
        again.stop()


def test_token_create_prints_only_the_token(tmp_path: Path) -> None:
    result = symvault(
        "token", "create", "--data-dir", tmp_path, "--org", "acme", "--scope", "project:read"
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout), result.stdout


class TestCheck:
    def test_text_output(self, fixtures: dict[str, Any]) -> None:
        path = fixture_path(fixtures, "crash_elf_debug")
        result = symvault("check", path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        expected = fixtures["crash_elf_debug"]
        assert lines[0] == str(path)
        assert lines[1].split() == ["elf", "dbg", "x86_64"]
        assert lines[2].split() == ["debug", "id:", expected["debug_id"]]
        assert lines[3].split() == ["code", "id:", expected["code_id"]]
        assert "debug" in lines[5]

    def test_json_output_for_several_formats(self, fixtures: dict[str, Any]) -> None:
        keys = ["crash_elf", "crash_pdb", "crash_breakpad", "crash_dsym_arm64", "crash_macho_fat"]
        result = symvault("check", "--json", *(fixture_path(fixtures, key) for key in keys))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert [entry["path"] for entry in report] == [
            str(fixture_path(fixtures, key)) for key in keys
        ]
        for key, entry in zip(keys[:4], report, strict=False):
            (obj,) = entry["objects"]
            assert obj["debug_id"] == fixtures[key]["debug_id"], key
            assert obj["file_format"] == fixtures[key]["file_format"], key
            assert obj["arch"] == fixtures[key]["arch"], key
            assert sorted(obj["features"]) == sorted(fixtures[key]["features"]), key
        # A fat Mach-O file holds one object per architecture.
        assert {obj["arch"] for obj in report[4]["objects"]} == {"x86_64", "arm64"}

    def test_files_that_are_not_debug_files(self, fixtures: dict[str, Any], tmp_path: Path) -> None:
        missing = tmp_path / "missing.debug"
        result = symvault(
            "check",
            "--json",
            fixture_path(fixtures, "garbage"),
            missing,
            fixture_path(fixtures, "crash_elf"),
        )
        assert result.returncode == 1
        garbage, absent, good = json.loads(result.stdout)
        assert "Unsupported debug information file" in garbage["error"]
        assert absent["error"]
        assert good["objects"][0]["debug_id"] == fixtures["crash_elf"]["debug_id"]
