"""`symvault symbolicate` from the real command line: a debug file, or a request file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_path
from tests.support.stacktraces import crash_frame, module_of, probe_frames


def symvault(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symvault", "symbolicate", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


class TestDebugFile:
    def test_text_output(self, fixtures: dict[str, Any]) -> None:
        crash = fixtures["crash_addresses"]["crash_elf"]
        probe = fixtures["probes"]["crash_elf"][0]
        debug_file = fixture_path(fixtures, "crash_elf_debug")
        result = symvault("--debug-file", debug_file, crash["address"], probe["call_address"])
        assert result.returncode == 0, result.stderr
        expected = [crash["address"]]
        expected += [f"  {f['function']}  {f['file']}:{f['line']}" for f in crash["frames"]]
        expected += [probe["call_address"]]
        expected += [f"  {f['function']}  {f['file']}:{f['line']}" for f in probe["frames"]]
        assert result.stdout.splitlines() == expected

    def test_json_output_with_an_image_address(self, fixtures: dict[str, Any]) -> None:
        """Addresses are absolute; the image address is subtracted for the lookup and
        added back to `sym_addr`."""
        base = 0x7F00_0000_0000
        probe = fixtures["probes"]["shapes_elf"][2]
        address = hex(base + int(probe["call_address"], 16))
        result = symvault(
            "--debug-file",
            fixture_path(fixtures, "shapes_elf_debug"),
            "--image-addr",
            hex(base),
            "--json",
            address,
        )
        assert result.returncode == 0, result.stderr
        (entry,) = json.loads(result.stdout)
        assert entry["address"] == address
        assert [(f["symbol"], f["abs_path"], f["lineno"]) for f in entry["frames"]] == [
            (f["symbol"], f["file"], f["line"]) for f in probe["frames"]
        ]
        assert [f["function"] for f in entry["frames"]] == [
            "shapes::Shape::scaled_area(long volatile*) const",
            "shapes::accumulate_areas<long>(shapes::Shape const* const*, int, long volatile*)",
        ]
        assert entry["frames"][-1]["sym_addr"] == hex(
            base + int(probe["frames"][-1]["sym_addr"], 16)
        )

    def test_addresses_that_cannot_be_looked_up(self, fixtures: dict[str, Any]) -> None:
        result = symvault(
            "--debug-file",
            fixture_path(fixtures, "crash_elf_debug"),
            "--image-addr",
            "0x10000",
            "--json",
            "0x10010",  # the ELF header: no symbol
            "0x100",  # below the image
            "nonsense",
            "0x11131",
        )
        entries = json.loads(result.stdout)
        assert [entry.get("error") for entry in entries] == [
            "no symbol at this address",
            "the address is below --image-addr",
            "invalid address 'nonsense'",
            None,
        ]
        assert entries[3]["frames"][0]["function"] == "crash_leaf_store"

    def test_json_output_exit_status(self, fixtures: dict[str, Any]) -> None:
        debug_file = fixture_path(fixtures, "crash_elf_debug")
        assert symvault("--debug-file", debug_file, "0x10").returncode == 1
        assert symvault("--debug-file", debug_file, "--json", "0x10").returncode == 1

    def test_multi_architecture_files_need_an_arch(self, fixtures: dict[str, Any]) -> None:
        fat = fixture_path(fixtures, "crash_macho_fat")
        probe = fixtures["probes"]["crash_macho_arm64"][2]
        result = symvault("--debug-file", fat, "--arch", "arm64", probe["call_address"])
        assert result.returncode == 0, result.stderr
        # The fat binary has a symbol table only: the outer function, no line.
        assert result.stdout.splitlines() == [probe["call_address"], "  crash_run  ??:0"]

        guessed = symvault("--debug-file", fat, probe["call_address"])
        assert guessed.returncode == 1
        assert "choose one with --arch" in guessed.stdout
        assert "x86_64, arm64" in guessed.stdout

        wrong = symvault("--debug-file", fat, "--arch", "ppc", probe["call_address"])
        assert wrong.returncode == 1
        assert "no object for arch ppc" in wrong.stdout

    @pytest.mark.parametrize("key", ["garbage", "truncated"])
    def test_unreadable_files(self, fixtures: dict[str, Any], key: str) -> None:
        result = symvault("--debug-file", fixture_path(fixtures, key), "0x10")
        assert result.returncode == 1
        assert "cannot read" in result.stdout

    def test_no_address(self, fixtures: dict[str, Any]) -> None:
        result = symvault("--debug-file", fixture_path(fixtures, "crash_elf_debug"))
        assert result.returncode == 2
        assert "at least one address" in result.stderr


class TestRequestFile:
    BASE = 0x5555_0000_0000

    @pytest.fixture
    def symbols(self, fixtures: dict[str, Any], tmp_path: Path) -> Path:
        """A native-layout directory holding crash.debug."""
        code_id = fixtures["crash_elf"]["code_id"]
        target = tmp_path / "symbols" / code_id[:2] / f"{code_id[2:]}.debug"
        target.parent.mkdir(parents=True)
        shutil.copyfile(fixture_path(fixtures, "crash_elf_debug"), target)
        return tmp_path / "symbols"

    def test_runs_the_request(
        self, fixtures: dict[str, Any], symbols: Path, tmp_path: Path
    ) -> None:
        body = {
            "sources": [{"type": "filesystem", "id": "local", "path": str(symbols)}],
            "modules": [module_of(fixtures, "crash_elf", self.BASE)],
            "stacktraces": [
                {
                    "frames": [
                        crash_frame(fixtures, "crash_elf", self.BASE),
                        *probe_frames(fixtures, "crash_elf", self.BASE),
                    ]
                }
            ],
        }
        request = tmp_path / "request.json"
        request.write_text(json.dumps(body))
        result = symvault("--data-dir", tmp_path / "data", "--request", request)
        assert result.returncode == 0, result.stderr
        response = json.loads(result.stdout)
        assert response["status"] == "completed"
        frames = response["stacktraces"][0]["frames"]
        assert [frame["function"] for frame in frames] == [
            "crash_leaf_store",
            "crash_inline_inner",
            "crash_inline_outer",
            "crash_run",
            "crash_inline_inner",
            "crash_inline_outer",
            "crash_run",
            "crash_run",
            "crash_dispatch",
            "main",
        ]
        # The same adjustment as the server: callers are looked up one byte back.
        caller = probe_frames(fixtures, "crash_elf", self.BASE)[-1]["instruction_addr"]
        assert frames[-1]["instruction_addr"] == hex(int(caller, 16) - 1)
        assert response["modules"][0]["debug_status"] == "found"

    def test_configured_sources(
        self, fixtures: dict[str, Any], symbols: Path, tmp_path: Path
    ) -> None:
        config = tmp_path / "config.yml"
        config.write_text(
            json.dumps({"sources": [{"type": "filesystem", "id": "local", "path": str(symbols)}]})
        )
        body = {
            "modules": [module_of(fixtures, "crash_elf", self.BASE)],
            "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", self.BASE)]}],
        }
        request = tmp_path / "request.json"
        request.write_text(json.dumps(body))
        result = symvault("--config", config, "--data-dir", tmp_path / "data", "--request", request)
        assert result.returncode == 0, result.stderr
        (frame,) = json.loads(result.stdout)["stacktraces"][0]["frames"]
        assert frame["function"] == "crash_leaf_store"

    def test_a_request_not_matching_the_schema(self, tmp_path: Path) -> None:
        request = tmp_path / "request.json"
        request.write_text('{"stacktraces": [{"frames": [{}]}]}')
        result = symvault("--data-dir", tmp_path / "data", "--request", request)
        assert result.returncode == 2
        assert result.stdout == ""
        assert "stacktraces.0.frames.0.instruction_addr: Field required" in result.stderr

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"[" * 100_000 + b"]" * 100_000, "the JSON is nested too deeply"),
            (b"\xe4\x00garbage", "can't decode byte 0xe4"),
            (b"{", "Expecting property name"),
        ],
    )
    def test_an_unreadable_request(self, tmp_path: Path, content: bytes, message: str) -> None:
        request = tmp_path / "request.json"
        request.write_bytes(content)
        result = symvault("--data-dir", tmp_path / "data", "--request", request)
        assert result.returncode == 2
        assert result.stdout == ""
        assert f"{request}: " in result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
