"""Every error symvault raises on purpose, in one hierarchy.

```
SymvaultError
├── ConfigError                the configuration file or a flag is wrong
├── ClientError                a request cannot be served as asked (HTTP 4xx)
│   ├── BadRequest             400: malformed input, failed checks
│   │   └── ChunkRejected      400: a chunk-upload request broke a limit
│   ├── Unauthorized           401: no or an unknown token
│   ├── Forbidden              403: the token may not do this
│   ├── NotFound               404: no such organization, project, file, request
│   ├── PayloadTooLarge        413: the body is over its limit
│   ├── UnprocessableEntity    422: valid JSON that does not match the schema
│   └── ServiceUnavailable     503: too busy right now, retry later
└── DebugFileError             a file is not a usable debug file (becomes an
                               assemble `error` detail, not an HTTP error)
```

`ClientError.status_code` is the HTTP status the API answers with; the API
layer turns these into `{"detail": message}` bodies.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ChunkRejected",
    "ClientError",
    "ConfigError",
    "DebugFileError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "SymvaultError",
    "Unauthorized",
    "UnprocessableEntity",
]


class SymvaultError(Exception):
    """Base of all errors raised on purpose."""


class ConfigError(SymvaultError):
    """The configuration is invalid."""


class ClientError(SymvaultError):
    """A request that cannot be served as asked."""

    status_code = 400

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class BadRequest(ClientError):
    status_code = 400


class ChunkRejected(BadRequest):
    """A chunk-upload request broke a limit or a checksum did not match.

    Sentry answers these with `{"error": ...}` rather than `{"detail": ...}`.
    """


class Unauthorized(ClientError):
    status_code = 401


class Forbidden(ClientError):
    status_code = 403


class NotFound(ClientError):
    status_code = 404


class PayloadTooLarge(ClientError):
    status_code = 413


class UnprocessableEntity(ClientError):
    status_code = 422


class ServiceUnavailable(ClientError):
    status_code = 503


class DebugFileError(SymvaultError):
    """A file that is not a debug file symvault can store; the message is shown to uploaders."""
