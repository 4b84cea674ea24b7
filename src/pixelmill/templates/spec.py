"""What one template version says: a body with typed variables, locked parameters (brand rules),
the parameters a caller may override, a negative prompt, and words that may not be substituted
in. A version's content hash is the hash of this, canonically written."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pixelmill.exceptions import ValidationError
from pixelmill.prompts.params import MAX_PROMPT_CHARS
from pixelmill.prompts.slots import render_template, slots_of
from pixelmill.safety.moderation import TermList
from pixelmill.tasks.requests import TEMPLATE_FIELDS, Delivery, ImagineRequest, RequestBody, VariableValue

#: Imagine fields a template may lock or let the caller override: the picture's parameters.
#: Delivery fields (webhook, lane, priority, engine, output profile) and ``cache`` stay the
#: caller's; ``prompt`` is the template's.
PARAMETERS = tuple(
    name for name in ImagineRequest.model_fields
    if name not in Delivery.model_fields and name not in TEMPLATE_FIELDS and name not in ("prompt", "cache")
)


class Variable(RequestBody):
    type: Literal["text", "enum", "number"] = "text"
    description: str = Field("", max_length=500)
    #: enum: the allowed values.
    values: list[str] | None = Field(None, min_length=1, max_length=200)
    #: text: length limits.
    min_length: int = Field(1, ge=0, le=1000)
    max_length: int = Field(100, ge=1, le=1000)
    #: number: range.
    minimum: float | None = None
    maximum: float | None = None
    #: Used when the caller leaves the variable out; without one the variable is required.
    default: VariableValue | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Variable:
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("values go with type enum (and enum needs values)")
        if self.min_length > self.max_length:
            raise ValueError("min_length is more than max_length")
        if self.default is not None:
            self.check("default", self.default)
        return self

    def check(self, where: str, value: Any) -> str:
        """The value as text, or code 4 naming ``where``."""
        if self.type == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValidationError(where, f"must be a number, got {value!r}") from None
            if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
                raise ValidationError(where, f"must be within {self.minimum}..{self.maximum}, got {value}")
            return f"{value:g}"
        text = str(value).strip()
        if self.type == "enum":
            assert self.values is not None
            if text not in self.values:
                raise ValidationError(where, f"must be one of {', '.join(self.values)}; got {text!r}")
            return text
        if not self.min_length <= len(text) <= self.max_length:
            raise ValidationError(where, f"must be {self.min_length}-{self.max_length} characters, got {len(text)}")
        return text


class TemplateSpec(RequestBody):
    """The content of a template version."""

    body: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The prompt, with {variable} slots.")
    variables: dict[str, Variable] = Field(default_factory=dict, max_length=50)
    locked: dict[str, Any] = Field(
        default_factory=dict, description="Parameters every request gets and no caller may change (aspect_ratio, version, raw, stylize, ...).",
    )
    overrides: list[str] = Field(default_factory=list, description="Parameters a caller may set (seed, chaos, ...); any other is refused.")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    forbidden: list[str] = Field(
        default_factory=list, max_length=500, description="Words no variable may bring in (matched like the moderation word filter).",
    )

    @field_validator("overrides")
    @classmethod
    def _known_overrides(cls, value: list[str]) -> list[str]:
        unknown = [n for n in value if n not in PARAMETERS]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a parameter; parameters are {', '.join(PARAMETERS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TemplateSpec:
        slots = slots_of(self.body, "body")
        if sorted(slots) != sorted(self.variables):
            raise ValueError(f"the body's slots ({', '.join(slots) or 'none'}) and variables ({', '.join(self.variables) or 'none'}) differ")
        unknown = [n for n in self.locked if n not in PARAMETERS]
        if unknown:
            raise ValueError(f"locked {', '.join(unknown)}: not a parameter; parameters are {', '.join(PARAMETERS)}")
        both = sorted(set(self.locked) & set(self.overrides))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both locked and an override")
        # The locked values must be valid imagine fields: refuse a bad brand rule now, not on use.
        ImagineRequest(prompt="x", **self.locked)
        for word in self.forbidden:
            TermList({"forbidden": [word]})  # a word with no letters is refused here
        return self

    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def render(self, given: Mapping[str, Any] | None) -> str:
        """The prompt for ``given`` variable values (defaults filled in), or code 4 naming the
        variable: unknown, missing, out of its type's limits, or carrying a forbidden word."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.variables))
        if unknown:
            raise ValidationError(f"variables.{unknown[0]}", f"not a variable of this template ({', '.join(self.variables) or 'it has none'})")
        values: dict[str, str] = {}
        for name, variable in self.variables.items():
            if name in given:
                values[name] = variable.check(f"variables.{name}", given[name])
            elif variable.default is not None:
                values[name] = variable.check(f"variables.{name}", variable.default)
            else:
                raise ValidationError(f"variables.{name}", "missing (the variable has no default)")
        if self.forbidden:
            words = TermList({"forbidden": self.forbidden})
            for name, text in values.items():
                hit = words.find(text)
                if hit is not None:
                    raise ValidationError(f"variables.{name}", f"{hit.found!r} may not be used in this template (forbidden: {hit.term})")
        return render_template(self.body, values, "variables", field="body")
