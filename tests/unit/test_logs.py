"""Structured log events in text and JSON form."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from symvault.logs import configure_logging, log_event

logger = logging.getLogger("symvault.test")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`configure_logging` replaces the root handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_are_event_then_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    log_event(logger, "assemble.ok", checksum="ab12", size=42, name="two words", empty="")
    line = capsys.readouterr().err.strip()
    assert line.endswith('info assemble.ok checksum=ab12 size=42 name="two words" empty=""')


@pytest.mark.usefixtures("restore_logging")
def test_text_events_stay_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    log_event(
        logger,
        "assemble.failed",
        name="crash.debug\nassemble.ok",
        tab="a\tb",
        detail="invalid ELF file\n  caused by: bad headers",
    )
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(
        'assemble.failed name="crash.debug\\nassemble.ok" tab="a\\tb" '
        'detail="invalid ELF file\\n  caused by: bad headers"'
    )


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    log_event(logger, "chunk.saved", level=logging.DEBUG, count=3, detail='a "quoted" value')
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("job.failed")
    first, second = capsys.readouterr().err.strip().splitlines()
    event = json.loads(first)
    assert event["event"] == "chunk.saved"
    assert event["level"] == "debug"
    assert event["logger"] == "symvault.test"
    assert event["count"] == 3
    assert event["detail"] == 'a "quoted" value'
    failure = json.loads(second)
    assert failure["level"] == "error"
    assert "RuntimeError: boom" in failure["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_events(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "text")
    log_event(logger, "quiet.event", detail="x")
    log_event(logger, "loud.event", level=logging.WARNING, detail="y")
    output = capsys.readouterr().err
    assert "quiet.event" not in output
    assert "warning loud.event detail=y" in output
