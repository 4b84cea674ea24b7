"""``{name}`` slots in a prompt template (batch ``prompt_template``, versioned templates), filled
from caller values. One rule for both: values are words, never parameters."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from pixelmill.exceptions import ValidationError

#: A value carrying these could add flags or weights to the prompt; they belong in the template.
FORBIDDEN_IN_VALUES = ("--", "::", "\u2014")


def slots_of(template: str, field: str = "prompt_template") -> list[str]:
    """The slot names of ``template``, in order, each once."""
    slots: list[str] = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                raise ValidationError(field, f"slot {{{name}}} must be a plain {{name}} (no formats or indexes)")
            slots.append(name)
    except ValueError as exc:  # unbalanced braces
        raise ValidationError(field, f"{exc}; write {{{{ and }}}} for literal braces") from None
    return list(dict.fromkeys(slots))


def render_template(template: str, variables: Mapping[str, Any], where: str, field: str = "prompt_template") -> str:
    """``{name}`` slots filled from ``variables``; a slot left empty or a stray value is an error."""
    slots = slots_of(template, field)
    missing = [n for n in slots if n not in variables]
    if missing:
        raise ValidationError(where, f"missing {', '.join(repr(n) for n in missing)}")
    extra = sorted(set(variables) - set(slots))
    if extra:
        raise ValidationError(where, f"{', '.join(repr(n) for n in extra)} is not a slot of {field}")
    for name, value in variables.items():
        if any(bad in str(value) for bad in FORBIDDEN_IN_VALUES):
            raise ValidationError(f"{where}.{name}", "values may not contain '--' or '::' (parameters belong in the template)")
    return template.format(**{k: str(v) for k, v in variables.items()})
