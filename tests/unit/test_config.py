"""The configuration tree: durations, sizes, the YAML file, overrides and their errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from symvault.config import Config, load_config, parse_duration, parse_size
from symvault.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "symvault.yml"
    path.write_text(text, encoding="utf-8")
    return path


class TestDurations:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (90, 90),
            (1.5, 1.5),
            (0, 0),
            ("90", 90),
            ("90s", 90),
            ("250ms", 0.25),
            ("15 min", 900),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("2 days", 172800),
            ("1w", 604800),
            ("  10S ", 10),
            ({"hours": 1}, 3600),
            ({"minutes": 1, "seconds": 30}, 90),
            ({"milliseconds": 500}, 0.5),
            (timedelta(minutes=2), 120),
        ],
    )
    def test_accepted_spellings(self, value: Any, seconds: float) -> None:
        assert parse_duration(value) == timedelta(seconds=seconds)

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "soon",
            "h",
            "10 fortnights",
            "1h and a bit",
            "-5s",
            [1, 2],
            {"hour": 1},
            {"hours": "x"},
            {"hours": None},
            True,
            None,
            -5,
            -0.5,
            {"hours": -1},
            float("inf"),
            float("nan"),
            10**20,
            "99999999999d",
        ],
    )
    def test_invalid_durations_are_config_errors(self, value: Any) -> None:
        with pytest.raises(ConfigError, match=r"upload\.max_wait"):
            load_config(None, {"upload.max_wait": value})

    def test_unknown_unit_is_named(self) -> None:
        with pytest.raises(ValueError, match="'fortnights'"):
            parse_duration("10 fortnights")


class TestSizes:
    @pytest.mark.parametrize(
        ("value", "size"),
        [
            (1024, 1024),
            (2048.0, 2048),
            ("1024", 1024),
            ("100b", 100),
            ("8MiB", 8 * 1024**2),
            ("8 MiB", 8 * 1024**2),
            ("8mb", 8 * 1024**2),
            ("2GiB", 2 * 1024**3),
            ("2 GB", 2 * 1024**3),
            ("512k", 512 * 1024),
            ("1.5KiB", 1536),
            ("1TiB", 1024**4),
        ],
    )
    def test_accepted_spellings(self, value: Any, size: int) -> None:
        assert parse_size(value) == size

    @pytest.mark.parametrize(
        "value", ["", "big", "8 MiBs", "-1", "8 PiB", "MiB", "1.5.2k", 1.5, None, [8], True]
    )
    def test_invalid_sizes_are_config_errors(self, value: Any) -> None:
        with pytest.raises(ConfigError, match=r"upload\.chunk_size"):
            load_config(None, {"upload.chunk_size": value})

    def test_limits_of_fields_apply(self) -> None:
        with pytest.raises(ConfigError, match=r"upload\.chunk_size"):
            load_config(None, {"upload.chunk_size": 0})

    def test_a_memory_reserve_is_a_size_up_to_a_gibibyte(self) -> None:
        config = load_config(None, {"symbolication.fetch_memory_reserve": "64MiB"})
        assert config.symbolication.fetch_memory_reserve == 64 * 1024**2
        with pytest.raises(ConfigError, match=r"symbolication\.fetch_memory_reserve"):
            load_config(None, {"symbolication.fetch_memory_reserve": "2GiB"})


class TestLoading:
    def test_defaults_without_a_file(self) -> None:
        config = load_config(None)
        assert config == Config()
        assert config.upload.chunk_size == 8 * 1024**2
        assert config.upload.max_file_size == 2 * 1024**3
        assert config.server.bind == "127.0.0.1:3021"

    def test_yaml_file(self, tmp_path: Path) -> None:
        path = write_config(
            tmp_path,
            """
data_dir: /srv/symvault
server:
  bind: "0.0.0.0:8080"
  public_url: https://symbols.example.com
upload:
  chunk_size: 4MiB
  max_file_size: 4GiB
  max_wait: 1h 30m
  error_retention: {minutes: 2}
  assemble_workers: 4
logging:
  level: debug
  format: json
""",
        )
        config = load_config(path)
        assert config.data_dir == Path("/srv/symvault")
        assert config.server.host == "0.0.0.0"
        assert config.server.port == 8080
        assert config.server.public_url == "https://symbols.example.com"
        assert config.upload.chunk_size == 4 * 1024**2
        assert config.upload.max_file_size == 4 * 1024**3
        assert config.upload.max_wait == timedelta(minutes=90)
        assert config.upload.error_retention == timedelta(minutes=2)
        assert config.upload.assemble_workers == 4
        assert config.upload.chunks_per_request == 64  # untouched keys keep their default
        assert config.logging.format == "json"

    def test_empty_file_means_defaults(self, tmp_path: Path) -> None:
        assert load_config(write_config(tmp_path, "# nothing here\n")) == Config()

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("uplaod:\n  chunk_size: 1MiB\n", "uplaod"),
            ("upload:\n  chunk_sise: 1MiB\n", "upload.chunk_sise"),
            ("server:\n  bind: 127.0.0.1:1\n  pubilc_url: x\n", "server.pubilc_url"),
        ],
    )
    def test_unknown_keys_are_refused_by_name(self, tmp_path: Path, text: str, key: str) -> None:
        with pytest.raises(ConfigError, match=rf"{key}: Extra inputs are not permitted"):
            load_config(write_config(tmp_path, text))

    def test_all_problems_are_reported_together(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, "upload:\n  chunk_size: huge\n  concurrency: 1000\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert "upload.chunk_size" in str(caught.value)
        assert "upload.concurrency" in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("sources: sentry\n", "sources: Input should be a list"),
            ("sources:\n  - 1\n", "sources.0: Input should be a mapping"),
            ("upload: 5\n", "upload: Input should be a mapping"),
            (
                "reserved_ip_allowlist: 10.0.0.0/8\n",
                "reserved_ip_allowlist: Input should be a list",
            ),
        ],
    )
    def test_type_errors_speak_yaml(self, tmp_path: Path, text: str, problem: str) -> None:
        """Lists and mappings, not the Python types the file is validated into."""
        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path, text))
        assert str(caught.value) == f"invalid configuration: {problem}"

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read config file"):
            load_config(tmp_path / "absent.yml")

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(write_config(tmp_path, "upload: [unclosed\n"))

    def test_top_level_must_be_a_mapping(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="mapping at the top level"):
            load_config(write_config(tmp_path, "- a\n- b\n"))


class TestOverrides:
    def test_dotted_overrides_win_over_the_file(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, "upload:\n  chunk_size: 4MiB\n  concurrency: 4\n")
        config = load_config(
            path, {"upload.chunk_size": "1MiB", "logging.level": "warning", "data_dir": "/d"}
        )
        assert config.upload.chunk_size == 1024**2
        assert config.upload.concurrency == 4
        assert config.logging.level == "warning"
        assert config.data_dir == Path("/d")

    def test_override_below_a_scalar_is_refused(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, "upload: 5\n")
        with pytest.raises(ConfigError, match="'upload' must be a mapping"):
            load_config(path, {"upload.chunk_size": "1MiB"})

    def test_unknown_override_is_refused_by_name(self) -> None:
        with pytest.raises(ConfigError, match=r"upload\.chunk_sise"):
            load_config(None, {"upload.chunk_sise": "1MiB"})


class TestServer:
    @pytest.mark.parametrize(
        ("bind", "host", "port"),
        [
            ("127.0.0.1:3021", "127.0.0.1", 3021),
            ("0.0.0.0:1", "0.0.0.0", 1),
            ("localhost:65535", "localhost", 65535),
            ("[::1]:8080", "::1", 8080),
        ],
    )
    def test_bind(self, bind: str, host: str, port: int) -> None:
        server = load_config(None, {"server.bind": bind}).server
        assert (server.host, server.port) == (host, port)

    @pytest.mark.parametrize(
        "bind", ["localhost", ":8080", "localhost:", "localhost:0", "localhost:65536", "h:80a"]
    )
    def test_invalid_bind(self, bind: str) -> None:
        with pytest.raises(ConfigError, match=r"server\.bind.*HOST:PORT"):
            load_config(None, {"server.bind": bind})


class TestDatabaseUrl:
    def test_defaults_to_sqlite_in_the_data_dir(self, tmp_path: Path) -> None:
        config = load_config(None, {"data_dir": str(tmp_path / "data")})
        assert config.database_url == f"sqlite:///{(tmp_path / 'data').resolve()}/symvault.db"

    def test_relative_data_dir_becomes_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        config = load_config(None, {"data_dir": "rel"})
        assert config.database_url == f"sqlite:///{tmp_path.resolve()}/rel/symvault.db"

    def test_explicit_url_wins(self) -> None:
        url = "postgresql+psycopg://symvault@db/symvault"
        assert load_config(None, {"database.url": url}).database_url == url
