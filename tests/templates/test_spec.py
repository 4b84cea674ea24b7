"""A template version's content: consistency rules checked when it is written, rendering with
typed variables, and a content hash that depends on the content only."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticError

from pixelmill.exceptions import ValidationError
from pixelmill.templates.spec import PARAMETERS, TemplateSpec

BASE: dict[str, Any] = {
    "body": "a {colour} {thing}",
    "variables": {"colour": {"type": "enum", "values": ["red", "blue"], "default": "red"}, "thing": {"max_length": 10},
                  },
    "locked": {"aspect_ratio": "3:2"},
    "overrides": ["seed"],
}


@pytest.mark.parametrize(("change", "message"), [
    ({"body": "a {colour} {thing} by {artist}"}, "slots"),
    ({"locked": {"webhook_url": "https://x"}}, "not a parameter"),
    ({"locked": {"stylize": 5000}}, "stylize"),
    ({"overrides": ["seed", "aspect_ratio"]}, "both locked and an override"),
    ({"overrides": ["prompt"]}, "not a parameter"),
    ({"variables": {"colour": {"type": "enum"}, "thing": {}}}, "values go with type enum"),
    ({"variables": {"colour": {"type": "enum", "values": ["red"], "default": "green"}, "thing": {}}}, "must be one of red"),
    ({"forbidden": ["---"]}, "no letters"),
    ({"body": "a {colour!r} {thing}"}, "plain {name}"),
])
def test_an_inconsistent_version_is_refused_when_written(change: dict[str, Any], message: str) -> None:
    with pytest.raises((PydanticError, ValidationError)) as err:
        TemplateSpec.model_validate(BASE | change)
    assert message in str(err.value)


def test_rendering_fills_defaults_and_checks_each_variable() -> None:
    spec = TemplateSpec.model_validate(BASE | {"variables": BASE["variables"] | {"thing": {"max_length": 10}},
                                               "forbidden": ["acme"]})
    assert spec.render({"thing": "kite"}) == "a red kite"
    assert spec.render({"thing": "kite", "colour": "blue"}) == "a blue kite"
    for given, field, rule in [
        ({}, "variables.thing", "missing"),
        ({"thing": "a very long kite"}, "variables.thing", "1-10 characters"),
        ({"thing": "kite", "colour": "green"}, "variables.colour", "one of red, blue"),
        ({"thing": "kite", "size": 3}, "variables.size", "not a variable"),
        ({"thing": "k--ar 4:1"}, "variables.thing", "may not contain '--'"),
        ({"thing": "4CME kite"}, "variables.thing", "forbidden: acme"),
    ]:
        with pytest.raises(ValidationError) as err:
            spec.render(given)
        assert err.value.field == field and rule in err.value.rule


def test_numbers_are_typed_and_ranged() -> None:
    spec = TemplateSpec.model_validate({"body": "{n} cats", "variables": {"n": {"type": "number", "minimum": 1, "maximum": 9}}})
    assert spec.render({"n": 3}) == "3 cats" and spec.render({"n": "4"}) == "4 cats"
    with pytest.raises(ValidationError, match="within 1.0..9.0"):
        spec.render({"n": 12})
    with pytest.raises(ValidationError, match="must be a number"):
        spec.render({"n": "many"})


def test_the_content_hash_depends_on_content_only() -> None:
    a = TemplateSpec.model_validate(BASE)
    b = TemplateSpec.model_validate(dict(reversed(list(BASE.items()))))  # same content, other key order
    c = TemplateSpec.model_validate(BASE | {"negative_prompt": "blur"})
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert {"aspect_ratio", "stylize", "seed", "negative_prompt"} <= set(PARAMETERS)
    assert not {"prompt", "webhook_url", "lane", "template", "cache"} & set(PARAMETERS)
