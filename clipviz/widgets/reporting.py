"""How every clipviz app reports a problem: one format, one place, and refused values that change nothing.

An app keeps an ``ipywidgets.Output`` named ``_errors`` among its children and a ``last_error``
attribute. :func:`show_error` writes ``"⚠ <message>"`` there (clipviz's own errors as they are,
anything else with its type first: :func:`clipviz.errors.describe`) and sets ``last_error`` to the
same text; ``show_error(app, None)`` clears both. :func:`run_guarded` runs a callback and routes a
failure there instead of losing it (STYLE: "route callback errors into an Output").

:func:`refuse_invalid` checks values *before* a state traitlet takes them. A refused value (say
``app.state.image_index = 99`` from code) is reported in the app and the state keeps its value —
which is what the linked controls show — so the next valid edit works. Without it the control
raises ipywidgets' ``TraitError`` after the state already changed, and state and controls disagree.

Adopting it in an app takes three lines::

    self.last_error = None
    self._errors = widgets.Output()                       # among the app's children
    refuse_invalid(self, self.state, {"method": check_method, "row": check_row})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import ClipvizError, InvalidArgument, WrongType, describe

__all__ = ["check_choice", "check_index", "refuse_invalid", "run_guarded", "show_error"]


def show_error(app, error: BaseException | None) -> None:
    """Show ``error`` in ``app._errors`` and set ``app.last_error`` (``None`` clears both)."""
    app.last_error = None if error is None else describe(error)
    output = getattr(app, "_errors", None)
    if output is not None:
        output.outputs = ()  # (clear_output() would print terminal escapes outside a kernel)
        if error is not None:
            output.append_stdout(f"⚠ {app.last_error}\n")


def run_guarded(app, function: Callable, *args) -> bool:
    """Run ``function(*args)``; on failure show the error in ``app`` and return ``False``."""
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - anything a user's input can raise belongs in the message
        show_error(app, error)
        return False
    show_error(app, None)
    return True


def refuse_invalid(app, state, checks: Mapping[str, Callable[[object], None]]) -> None:
    """Before ``state.<name>`` takes a value, run ``checks[name](value)``; refuse what it raises on.

    A check raises (preferably a :class:`clipviz.errors.ClipvizError` naming the control and the
    valid values) to refuse. The refusal is shown in ``app`` and the state keeps its current value,
    so linked controls and state stay the same; nothing propagates to the code that set it.
    """

    def validate(owner, proposal):  # called as handler(obj, proposal)
        name = proposal["trait"].name
        try:
            checks[name](proposal["value"])
        except (ClipvizError, ValueError, TypeError, IndexError, KeyError) as error:
            show_error(app, error)
            return getattr(proposal["owner"], name)  # unchanged: no notification, controls untouched
        return proposal["value"]

    # traitlets' documented hook for validators added at run time (what @validate does per class)
    state._register_validator(validate, tuple(checks))


def check_index(name: str, count: Callable[[], int], what: str = "item") -> Callable[[object], None]:
    """A check that ``value`` is an index ``0 .. count() - 1`` (``count`` is read at check time)."""

    def check(value) -> None:
        n = count()
        if isinstance(value, bool) or not isinstance(value, int):
            raise WrongType(name, f"got {type(value).__name__} {value!r}; pass the number of an {what}, 0..{n - 1}")
        if not 0 <= value < n:
            raise InvalidArgument(name, f"there is no {what} {value}: choose 0..{n - 1}")

    return check


def check_choice(name: str, choices: Callable[[], object]) -> Callable[[object], None]:
    """A check that ``value`` is one of ``choices()`` (read at check time, e.g. the current language's sets)."""

    def check(value) -> None:
        valid = list(choices())
        if value not in valid:
            raise InvalidArgument(name, f"{value!r} is not one of {', '.join(map(repr, valid))}")

    return check
