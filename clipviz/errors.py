"""The few error types clipviz raises for input a user controls.

Each subclasses the built-in type users already catch, so ``except ValueError`` keeps working, and
``except clipviz.errors.ClipvizError`` catches every refusal clipviz makes in its own words. A
message names the argument that was wrong, what it got, and what to pass instead:

    >>> model.run_with_cache(images=imgs, layers=99)
    InvalidArgument: layers: 99 is out of range: the vision tower has 4 blocks, 0..3 (or -4..-1 from the end)

Raise them with the argument's name first (``InvalidArgument("layers", "...")``) so messages read
alike across the library (``argument`` is kept on the exception for code that wants it), or with
one message that names the argument itself (``InvalidArgument("layers=99 is out of range ...")``).
"""

from __future__ import annotations

__all__ = [
    "BadCheckpoint",
    "ClipvizError",
    "DeviceUnavailable",
    "InvalidArgument",
    "MissingFile",
    "WrongType",
    "describe",
    "type_name",
]


class ClipvizError(Exception):
    """Base of every error clipviz raises about its input; the message says what to pass instead."""

    def __init__(self, *args):
        # ClipvizError(message) or ClipvizError(argument, message); one string keeps pickling simple
        if len(args) == 2:
            argument, message = args
            self.argument = argument
            text = f"{argument}: {message}" if argument else message
        elif len(args) == 1:
            self.argument, text = None, args[0]
        else:
            raise TypeError("ClipvizError takes (message) or (argument, message)")
        super().__init__(text)

    def __str__(self) -> str:  # KeyError-style subclasses would quote the message; keep it plain
        return self.args[0] if self.args else ""


class InvalidArgument(ClipvizError, ValueError):
    """A value of the right type that clipviz cannot use (out of range, unknown name, empty, NaN...)."""


class WrongType(ClipvizError, TypeError):
    """A value of a type that the argument does not take."""


class MissingFile(ClipvizError, FileNotFoundError):
    """A path that does not exist, or exists but is not the kind of file (a regular file, a directory) asked for."""


class BadCheckpoint(ClipvizError, ValueError):
    """A checkpoint directory clipviz cannot read: invalid config.json, no weights, missing processor."""


class DeviceUnavailable(ClipvizError, RuntimeError):
    """A device that this machine does not have (``device="cuda"`` without CUDA, an unknown name)."""


def type_name(value) -> str:
    """``int``, ``bytes``, ``NoneType``... for messages that say what was got."""
    return type(value).__name__


def describe(error: BaseException) -> str:
    """How the apps show an error: clipviz's own message as it is; anything else with its type first.

    One format for every app (``app.last_error`` holds exactly this text).
    """
    if isinstance(error, ClipvizError):
        return str(error)
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
