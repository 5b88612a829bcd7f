"""The one exception hierarchy of SSB.

Every error raised for bad input derives from :class:`SSBError`, which is a
:class:`ValueError`, so callers can catch either.  Errors about a bitstream
carry the byte ``offset`` where the problem was found and the ``field`` path
(``"unit[3].header.length"``) naming what was wrong.  This module is standard
library only: every layer may import it.
"""

from __future__ import annotations

__all__ = [
    "SSBError",
    "TruncatedError",
    "ChecksumError",
    "UnsupportedVersionError",
    "LimitExceededError",
    "MalformedFieldError",
    "ModelMismatchError",
    "MissingDependencyError",
]


class SSBError(ValueError):
    """Root of every SSB error.

    Parameters
    ----------
    message:
        What is wrong, in words.
    offset:
        Byte offset in the stream where the problem was detected, if any.
    field:
        Dotted path of the syntax element concerned, e.g. ``"unit[2].header.length"``.
    """

    def __init__(self, message: str, *, offset: int | None = None, field: str | None = None):
        self.message = message
        self.offset = offset
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.field:
            where.append(f"field {self.field}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class TruncatedError(SSBError):
    """The stream ends before a declared structure does."""


class ChecksumError(SSBError):
    """A unit's stored checksum does not match its bytes."""


class UnsupportedVersionError(SSBError):
    """The stream's major version is newer than this reader understands."""


class LimitExceededError(SSBError):
    """A declared size or count is over a reader limit; refused before allocating."""


class MalformedFieldError(SSBError):
    """A field holds a value the syntax does not allow."""


class ModelMismatchError(SSBError):
    """Weights, heads and bitstreams that were not made for each other."""


class MissingDependencyError(SSBError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""
