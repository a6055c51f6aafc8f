"""The `/symbolicate` request as Symbolicator accepts it.

`parse_request` validates a decoded JSON body; a `RequestError` names the
offending fields (`stacktraces.0.frames.3.addr_mode: ...`).
Unknown fields are ignored at every level, as Symbolicator does. Addresses
(`HexValue`) are JSON numbers or strings: `"0x..."` is hexadecimal, any other
string decimal. Other numbers and booleans must have their JSON type (`"11"` is
no signal, `"yes"` no boolean), as Symbolicator's deserializer requires.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from symvault.memo import Memo
from symvault.model.sources import SourceConfig
from symvault.model.validation import problems as validation_problems

__all__ = [
    "LANGUAGES",
    "TRUST_LEVELS",
    "RawFrame",
    "RawModule",
    "RawStacktrace",
    "RequestError",
    "RequestOptions",
    "SymbolicateRequest",
    "parse_hex",
    "parse_request",
]

_U64 = 1 << 64
_ADDRESS = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]+)|(?P<decimal>\+?[0-9]+)")

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
        if not -(_U64 >> 1) <= value < _U64:  # JSON numbers outside i64/u64 are refused
            raise ValueError(f"address out of range: {value}")
        return value % _U64  # negative numbers wrap, as Symbolicator's u64 casts do
    if isinstance(value, str):
        # The usual form, without the regular expression: `0x` and at most 16 ASCII
        # letters or digits, of which `int` takes hex digits only.
        if 2 < len(value) <= 18 and value[:2] == "0x" and value.isascii() and value[2:].isalnum():
            try:
                return int(value[2:], 16)
            except ValueError:
                pass  # a letter past f: the message comes from the general case
        # ASCII digits only: no whitespace, `_` separators or other scripts' digits.
        match = _ADDRESS.fullmatch(value)
        if match is None:
            raise ValueError(f"invalid address {value[:40]!r}")
        hexadecimal = match.group("hex")
        number = int(hexadecimal, 16) if hexadecimal else int(match.group("decimal"), 10)
        if number >= _U64:
            raise ValueError(f"address out of range: {value[:40]!r}")
        return number
    raise ValueError("expected an address (a number or a hex string)")


HexValue = Annotated[int, BeforeValidator(parse_hex)]
U32 = Annotated[int, Strict(), Field(ge=0, lt=1 << 32)]
U64 = Annotated[int, Strict(), Field(ge=0, lt=_U64)]
Flag = Annotated[bool, Strict()]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawFrame(_Model):
    platform: str | None = None
    addr_mode: str = "abs"
    instruction_addr: HexValue
    adjust_instruction_addr: Flag | None = None
    function_id: HexValue | None = None
    package: str | None = None
    lang: Language | None = None
    symbol: str | None = None
    sym_addr: HexValue | None = None
    function: str | None = None
    filename: str | None = None
    abs_path: str | None = None
    lineno: U32 | None = None
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
        if kind != "rel" or not (index.isascii() and index.isdigit()):
            raise ValueError("invalid address mode: use 'abs' or 'rel:<module index>'")
        return f"rel:{int(index)}"

    @property
    def relative_module(self) -> int | None:
        """The module index of a `rel:N` address, None for absolute ones."""
        return None if self.addr_mode == "abs" else int(self.addr_mode[4:])


class RawStacktrace(_Model):
    thread_id: U64 | None = None
    thread_name: str | None = None
    is_requesting: Flag | None = None
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
    """Symbolicator takes a JSON number only; a hex string (as its old docs showed) is
    accepted here too."""


class RequestOptions(_Model):
    dif_candidates: Flag = False
    apply_source_context: Flag = True
    frame_order: Literal["callee_first", "caller_first"] = "callee_first"


class SymbolicateRequest(_Model):
    platform: str | None = None
    signal: U32 | None = None
    sources: tuple[SourceConfig, ...] | None = None
    """None: the configured sources; an empty list: no sources."""
    stacktraces: tuple[RawStacktrace, ...] = ()
    modules: tuple[RawModule, ...] = Field(default=(), max_length=MAX_MODULES)
    options: RequestOptions = RequestOptions()

    @property
    def frame_count(self) -> int:
        return sum(len(stacktrace.frames) for stacktrace in self.stacktraces)


class RequestError(ValueError):
    """The request does not match the schema; the message names the fields."""


def parse_request(body: Any) -> SymbolicateRequest:
    """Validates a decoded `/symbolicate` body; raises `RequestError`."""
    if isinstance(body, dict) and isinstance(body.get("stacktraces"), list):
        body = {**body, "stacktraces": [_FRAMES.resolve(raw) for raw in body["stacktraces"]]}
    problems: list[str] = []
    sources: tuple[SourceConfig, ...] | None = None
    if isinstance(body, dict) and isinstance(body.get("sources"), list):
        # A client sends the same sources with every request: they are validated once.
        try:
            sources = _REQUEST_SOURCES.parse(body["sources"])
        except ValidationError as exc:
            problems = validation_problems(exc, "sources")
        body = {key: value for key, value in body.items() if key != "sources"}
    try:
        request = SymbolicateRequest.model_validate(body)
    except ValidationError as exc:
        problems += validation_problems(exc)
    if problems:
        raise RequestError("; ".join(problems[:10]))
    return request if sources is None else request.model_copy(update={"sources": sources})


#: Source lists longer than this (as JSON) are validated every time.
_REMEMBERED_SOURCES_JSON = 16 * 1024


class _SourcesMemo:
    """Validated source lists by their JSON text, a bounded number of them.

    Validated sources keep their fingerprint (part of every cache key), which
    is then computed once per definition too.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._adapter: TypeAdapter[tuple[SourceConfig, ...]] = TypeAdapter(tuple[SourceConfig, ...])
        self._known: Memo[bytes, tuple[SourceConfig, ...]] = Memo(capacity)

    def parse(self, raw: list[Any]) -> tuple[SourceConfig, ...]:
        """Raises pydantic's `ValidationError`."""
        try:
            key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not JSON orjson can write (an integer over 64 bits, say)
            return self._adapter.validate_python(raw)
        known = self._known.get(key)
        if known is not None:
            return known
        sources = self._adapter.validate_python(raw)
        if len(key) <= _REMEMBERED_SOURCES_JSON:  # so that 256 entries stay a few MiB
            self._known.put(key, sources)
        return sources


_REQUEST_SOURCES = _SourcesMemo()


#: Types of frame values a remembered frame may be found by (not lists, not floats).
_REMEMBERED_VALUE_TYPES = frozenset({str, int, bool, type(None)})
#: Frames with more fields or text than this are validated every time: the memo's
#: keys are the frames themselves, and its entry count bounds its memory only if
#: every entry is small (about 30 MiB when full).
_REMEMBERED_FIELDS = 20
_REMEMBERED_TEXT = 512


class _FramesMemo:
    """Validated frames by their fields: the same frames come back in crash after
    crash, and validating one costs more than looking it up. A frame is kept from its
    second use on: one-off frames would otherwise fill the memo for minutes."""

    def __init__(self, capacity: int = 16384) -> None:
        self._known: Memo[tuple[Any, ...], RawFrame] = Memo(capacity, repeats_only=True)

    def resolve(self, stacktrace: Any) -> Any:
        """`stacktrace` with the frames known or valid as `RawFrame`s; frames that are
        not valid stay as they came, for the request's validation to name their fault."""
        if not isinstance(stacktrace, dict):
            return stacktrace
        frames = stacktrace.get("frames")
        if not isinstance(frames, list) or len(frames) > MAX_FRAMES:
            return stacktrace
        resolved: list[Any] = []
        # A frame repeated in this stack trace (recursion) is validated once and
        # counts as one use.
        here: dict[tuple[Any, ...], RawFrame] = {}
        for frame in frames:
            if not isinstance(frame, dict):
                resolved.append(frame)
                continue
            if len(frame) > _REMEMBERED_FIELDS:
                resolved.append(frame)
                continue
            key: tuple[Any, ...] = tuple(frame.items())
            types = {type(value) for _, value in key}
            if not types <= _REMEMBERED_VALUE_TYPES or (
                sum(len(value) for _, value in key if type(value) is str) > _REMEMBERED_TEXT
            ):
                resolved.append(frame)  # a list, a float or long texts: validated every time
                continue
            if bool in types:
                # `True == 1`: where the booleans are is part of the key, or a frame
                # with `"lineno": true` would find one validated with `"lineno": 1`.
                key += (tuple(type(value) is bool for _, value in key),)
            known = self._known.get(key)
            if known is None:
                known = here.get(key)
            if known is None:
                try:
                    known = RawFrame.model_validate(frame)
                except ValidationError:
                    resolved.append(frame)
                    continue
                self._known.put(key, known)
                here[key] = known
            resolved.append(known)
        return {**stacktrace, "frames": resolved}


_FRAMES = _FramesMemo()
