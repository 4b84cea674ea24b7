from __future__ import annotations

import pytest

from pixelmill.exceptions import ValidationError
from pixelmill.prompts.aspect import AspectRatio
from pixelmill.prompts.parse import parse_prompt


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a cat", "a cat"),
        ("  a   cat\u200b  ", "a cat"),
        (
            "a serene mountain lake at sunrise --ar 16:9 --v 8.1 --s 100",
            "a serene mountain lake at sunrise --ar 16:9 --v 8.1 --s 100",
        ),
        ("a cat --aspect 32:18 --seed 7", "a cat --ar 16:9 --seed 7"),
        ("a cat --seed 7 --stylize 50 --chaos 10 --no dogs --tile", "a cat --s 50 --c 10 --no dogs --tile --seed 7"),
        ("a cat --niji", "a cat --niji 6"),
        ("a cat --ar 1:1", "a cat"),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    assert parse_prompt(text).canonical() == canonical


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "prompt: the subject text before the --parameters is empty"),
        ("--ar 16:9", "prompt: the subject text before the --parameters is empty"),
        ("a cat --foo 1", "prompt: unknown parameter --foo"),
        ("a cat --ar 16:9 --aspect 1:1", "prompt: --aspect is given more than once"),
        ("a cat --seed 4294967296", "prompt: --seed needs a whole number 0-4294967295, got '4294967296'"),
        ("a cat --s 1001", "prompt: --s needs a whole number 0-1000, got '1001'"),
        ("a cat --v banana", "prompt: --v needs a version like 6 or 8.1, got 'banana'"),
        ("a cat --tile yes", "prompt: --tile takes no value, got 'yes'"),
        ("a cat --ar", "prompt: --ar needs a value"),
        ("a cat --ar 5:1", "prompt --ar: '5:1' is more extreme than 1:4 or 4:1"),
        ("a cat --ar 16x9", "prompt --ar: '16x9' is not a ratio like 16:9"),
        ("a cat " + "x" * 4000, "prompt: longer than 4000 characters"),
    ],
)
def test_refusals_name_field_and_rule(text: str, error: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_prompt(text)
    assert err.value.description == error


@pytest.mark.parametrize(
    ("ratio", "size"),
    [("1:1", (512, 512)), ("16:9", (680, 384)), ("9:16", (384, 680)), ("2:3", (416, 624)), ("4:1", (1024, 256))],
)
def test_aspect_ratio_keeps_the_pixel_budget(ratio: str, size: tuple[int, int]) -> None:
    w, h = AspectRatio.parse(ratio).size(512)
    assert (w, h) == size
    assert w % 8 == 0 and h % 8 == 0
    assert abs(w * h - 512 * 512) / (512 * 512) < 0.05
