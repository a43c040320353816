"""Exceptions raised by tinymnet.

Every error tinymnet raises on purpose derives from :class:`TinymnetError`, which is a
:class:`ValueError` so callers that already catch ``ValueError`` keep working.
"""
from __future__ import annotations

import os

__all__ = ["TinymnetError", "FormatError"]


class TinymnetError(ValueError):
    """Base class of every error tinymnet raises on purpose."""


class FormatError(TinymnetError):
    """A model or weight file could not be read: missing, truncated, corrupt, hostile or of
    an unsupported kind.

    ``FormatError(message, path)`` puts the path in front of the message (``"<path>: ..."``)
    so every message says which file is at fault; ``path`` is also kept as an attribute.
    """

    def __init__(self, message: str, path: "str | os.PathLike[str] | None" = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = message
        if self.path is not None and not message.startswith(f"{self.path}:"):
            message = f"{self.path}: {message}"
        super().__init__(message)
