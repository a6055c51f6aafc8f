"""The `/symbolicate` request as Symbolicator accepts it.

Validation errors name the offending field (`stacktraces.0.frames.3.addr_mode`).
Unknown fields are ignored at every level, as Symbolicator does. Addresses
(`HexValue`) are JSON numbers or strings: `"0x..."` is hexadecimal, any other
string decimal.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from symvault.model.sources import SourceConfig

__all__ = [
    "LANGUAGES",
    "TRUST_LEVELS",
    "RawFrame",
    "RawModule",
    "RawStacktrace",
    "RequestOptions",
    "SymbolicateRequest",
    "parse_hex",
]

_U64 = 1 << 64

#: Languages symbolic knows; other values are refused, as Symbolicator does.
Language = Literal["unknown", "c", "cpp", "d", "go", "objc", "objcpp", "rust", "swift", "csharp"]
#: How a frame was found during stack walking.
Trust = Literal["none", "scan", "cfiscan", "fp", "cfi", "prewalked", "context"]
LANGUAGES = get_args(Language)
TRUST_LEVELS = get_args(Trust)

MAX_FRAMES = 20_000
MAX_MODULES = 20_000


def parse_hex(value: Any) -> int:
    """An address: a number, a `0x` hex string, or a decimal string."""
    if isinstance(value, bool):
        raise ValueError("expected an address (a number or a hex string)")
    if isinstance(value, int):
        return value % _U64  # negative numbers wrap, as Symbolicator's u64 casts do
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text[2:], 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            raise ValueError(f"invalid address {value[:40]!r}") from None
        if not 0 <= number < _U64:
            raise ValueError(f"address out of range: {value[:40]!r}")
        return number
    raise ValueError("expected an address (a number or a hex string)")


HexValue = Annotated[int, BeforeValidator(parse_hex)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawFrame(_Model):
    platform: str | None = None
    addr_mode: str = "abs"
    instruction_addr: HexValue
    adjust_instruction_addr: bool | None = None
    function_id: HexValue | None = None
    package: str | None = None
    lang: Language | None = None
    symbol: str | None = None
    sym_addr: HexValue | None = None
    function: str | None = None
    filename: str | None = None
    abs_path: str | None = None
    lineno: int | None = Field(default=None, ge=0)
    pre_context: tuple[str, ...] = ()
    context_line: str | None = None
    post_context: tuple[str, ...] = ()
    source_link: str | None = None
    trust: Trust = "none"

    @field_validator("addr_mode")
    @classmethod
    def _addr_mode(cls, value: str) -> str:
        if value == "abs":
            return value
        kind, _, index = value.partition(":")
        if kind != "rel" or not index.isdigit():
            raise ValueError("invalid address mode: use 'abs' or 'rel:<module index>'")
        return f"rel:{int(index)}"

    @property
    def relative_module(self) -> int | None:
        """The module index of a `rel:N` address, None for absolute ones."""
        return None if self.addr_mode == "abs" else int(self.addr_mode[4:])


class RawStacktrace(_Model):
    thread_id: int | None = None
    thread_name: str | None = None
    is_requesting: bool | None = None
    registers: dict[str, HexValue] = Field(default_factory=dict)
    frames: tuple[RawFrame, ...] = Field(max_length=MAX_FRAMES)


class RawModule(_Model):
    type: str
    code_id: str | None = None
    code_file: str | None = None
    debug_id: str | None = None
    debug_file: str | None = None
    debug_checksum: str | None = None
    image_addr: HexValue = 0
    image_size: HexValue | None = None


class RequestOptions(_Model):
    dif_candidates: bool = False
    apply_source_context: bool = True
    frame_order: Literal["callee_first", "caller_first"] = "callee_first"


class SymbolicateRequest(_Model):
    platform: str | None = None
    signal: int | None = Field(default=None, ge=0)
    sources: tuple[SourceConfig, ...] | None = None
    """None: the configured sources; an empty list: no sources."""
    stacktraces: tuple[RawStacktrace, ...] = ()
    modules: tuple[RawModule, ...] = Field(default=(), max_length=MAX_MODULES)
    options: RequestOptions = RequestOptions()

    @property
    def frame_count(self) -> int:
        return sum(len(stacktrace.frames) for stacktrace in self.stacktraces)
