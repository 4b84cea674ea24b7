"""How a Pydantic validation error reads, in one place: ``path: rule``.

Request bodies (code 4 answers), settings, output profiles, engine settings and the operator's
files all report a bad value this way, so an operator and a caller see the same words:
``requests[3].prompt: String should have at most 4000 characters``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def path(loc: Iterable[Any]) -> str:
    """A location as the rest of the service writes it, list positions in brackets:
    ``requests[3].prompt``, ``size[1]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def rule(error: Any, *, unknown: str = "unknown field") -> str:
    """The rule an error states, without Pydantic's "Value error, " prefix; ``unknown`` names a
    key the model does not have."""
    if error.get("type") == "extra_forbidden":
        return unknown
    return str(error.get("msg", "invalid")).removeprefix("Value error, ").replace("\n", " ")


def explain(error: Any, *, skip: int = 0, unknown: str = "unknown field") -> str:
    """``path: rule`` of one error, its first ``skip`` location parts left out (the setting's own name)."""
    where = path(list(error.get("loc", ()))[skip:])
    said = rule(error, unknown=unknown)
    return f"{where}: {said}" if where else said
