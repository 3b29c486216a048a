"""One exception type for bad input, and one way to say any exception in one line, so every
entry point can turn a failure into a one-line error."""
from __future__ import annotations


class PlatformError(Exception):
    """Bad input from the user (spec, data, model source, request); the message names the culprit."""


def first_line(exc: BaseException) -> str:
    """The exception's first line of text, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """What a failed run records: a PlatformError's message as it is (it names the culprit), any
    other exception's type and first line."""
    if isinstance(exc, PlatformError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
