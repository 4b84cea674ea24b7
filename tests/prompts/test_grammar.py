"""The prompt language, table-driven: what each valid prompt means (its canonical spelling), and
the exact answer to each invalid one."""

from __future__ import annotations

import pytest

from pixelmill.exceptions import ValidationError
from pixelmill.prompts.aspect import AspectRatio
from pixelmill.prompts.grammar import parse_prompt

VALID = [
    # (user text, canonical form)
    ("a cat", "a cat"),
    ("  a   cat  ", "a cat"),
    (
        "a serene mountain lake at sunrise --ar 16:9 --v 8.1 --s 100",
        "a serene mountain lake at sunrise --ar 16:9 --v 8.1 --s 100",
    ),
    # aliases, reduction of ratios, one fixed order
    ("a cat --seed 7 --aspect 32:18", "a cat --ar 16:9 --seed 7"),
    ("a cat --ar 1:1", "a cat"),
    ("a cat --ar 1024:768", "a cat --ar 4:3"),
    (
        "a cat --seed 7 --stylize 50 --chaos 10 --no dogs --tile --weird 250",
        "a cat --s 50 --c 10 --weird 250 --tile --no dogs --seed 7",
    ),
    ("a cat --w 3000 --quality .5", "a cat --weird 3000 --q 0.5"),
    ("a cat --q 1.0", "a cat --q 1"),
    ("a cat --version 7 --style raw", "a cat --v 7 --style raw"),
    ("a cat --style RAW", "a cat --style raw"),
    ("a cat --niji", "a cat --niji 7"),
    ("a cat --niji 6", "a cat --niji 6"),
    ("a cat --r 4", "a cat --repeat 4"),
    ("a cat --repeat 40 --stop 10", "a cat --stop 10 --repeat 40"),
    ("a cat --draft --hd", "a cat --draft --hd"),
    ("a cat --s 0 --c 0 --seed 0", "a cat --s 0 --c 0 --seed 0"),
    ("a cat --seed 4294967295", "a cat --seed 4294967295"),
    ("a cat --seed 007", "a cat --seed 7"),
    ("A Cat --AR 2:3", "A Cat --ar 2:3"),
    # the value of --no runs to the next flag
    ("a cat --no red, blue dogs --s 5", "a cat --s 5 --no red, blue dogs"),
    # image prompts lead; --iw weighs them
    (
        "https://img.example.com/a.png http://x.org/b.jpg a cat --iw 2.5",
        "https://img.example.com/a.png http://x.org/b.jpg a cat --iw 2.5",
    ),
    ("https://img.example.com/a.png a cat --iw 0", "https://img.example.com/a.png a cat --iw 0"),
    # a URL later in the text is text
    ("a cat at https://example.com", "a cat at https://example.com"),
    # references with their weights
    (
        "a cat --sw 200 --sref https://s.example/1.png https://s.example/2.png",
        "a cat --sref https://s.example/1.png https://s.example/2.png --sw 200",
    ),
    ("a cat --cref https://c.example/me.png --cw 0", "a cat --cref https://c.example/me.png --cw 0"),
    # multi-prompts
    ("hot dog::1.5 food::-0.5", "hot dog::1.5 food::-0.5"),
    ("space:: ship", "space::1 ship::1"),
    ("space::2 ship", "space::2 ship::1"),
    ("cat::", "cat::1"),
    ("cat::2 dog::1", "cat::2 dog::1"),
    # hygiene: NFKC, zero-width and control characters, whitespace
    ("ａ　ｃａｔ", "a cat"),
    ("a\u200b c\u200dat\u2060 \ufeff", "a cat"),
    ("a\tcat\n\r--ar\u00a016:9", "a cat --ar 16:9"),
    ("a ca\u0000t\u0007", "a cat"),
    ("ﬁsh", "fish"),
    # phones turn -- into an em dash
    ("a cat \u2014ar 16:9 \u2013seed 3", "a cat --ar 16:9 --seed 3"),
    ("years 1990 \u2013 2000", "years 1990 \u2013 2000"),
    # quoted words are literal: no flags, no weights, spacing kept
    ('a sign saying "OPEN  --ar 24h::2"', 'a sign saying "OPEN  --ar 24h::2"'),
    ("a sign saying \u201chello\u201d", 'a sign saying "hello"'),
    ('"::" --s 1', '"::" --s 1'),
]

INVALID = [
    # (user text, exact description of the code-4 answer)
    ("", "prompt: the subject is empty: describe what to draw before any --parameters"),
    ("   \u200b ", "prompt: the subject is empty: describe what to draw before any --parameters"),
    ("--ar 16:9", "prompt: the subject is empty: describe what to draw before any --parameters"),
    ("https://x.org/a.png --iw 1", "prompt: the subject is empty: describe what to draw before any --parameters"),
    ("a cat --foo 1", "prompt: unknown parameter --foo"),
    ("a -- b", "prompt: a lone -- has no parameter name after it (like --ar 16:9)"),
    ("a cat --ar16:9", "prompt: unknown parameter --ar16:9"),
    ("a cat --ar 16:9 --aspect 1:1", "prompt: --aspect is given more than once"),
    ("a cat --tile --tile", "prompt: --tile is given more than once"),
    ("a cat --v 7 --niji 6", "prompt: --v and --niji both pick the model; give one"),
    ("a cat --niji --version 6", "prompt: --v and --niji both pick the model; give one"),
    ("a cat --seed 4294967296", "prompt: --seed needs a whole number 0-4294967295, got '4294967296'"),
    ("a cat --seed -1", "prompt: --seed needs a whole number 0-4294967295, got '-1'"),
    ("a cat --seed 1.5", "prompt: --seed needs a whole number 0-4294967295, got '1.5'"),
    ("a cat --s 1001", "prompt: --s needs a whole number 0-1000, got '1001'"),
    ("a cat --stylize lots", "prompt: --stylize needs a whole number 0-1000, got 'lots'"),
    ("a cat --c 101", "prompt: --c needs a whole number 0-100, got '101'"),
    ("a cat --weird 3001", "prompt: --weird needs a whole number 0-3000, got '3001'"),
    ("a cat --q 3", "prompt: --q must be one of 0.25, 0.5, 1, 2, 4, got '3'"),
    ("https://x.org/a.png a cat --iw 3.5", "prompt: --iw needs a number 0-3, got '3.5'"),
    ("a cat --iw 1", "prompt: --iw weighs an image prompt; give a leading image URL or image_urls"),
    ("a cat --repeat 1", "prompt: --repeat needs a whole number 2-40, got '1'"),
    ("a cat --r 41", "prompt: --r needs a whole number 2-40, got '41'"),
    ("a cat --stop 9", "prompt: --stop needs a whole number 10-100, got '9'"),
    ("a cat --sw 10", "prompt: --sw weighs a style reference; give --sref too"),
    ("a cat --cw 10", "prompt: --cw weighs a character reference; give --cref too"),
    ("a cat --sref cat.png", "prompt: --sref takes image URLs, got 'cat.png'"),
    ("a cat --sref https://u:p@x.org/a.png", "prompt: https://u:p@x.org/a.png: URLs with user names or passwords are not accepted"),
    ("a cat --v banana", "prompt: --v must be one of 1, 2, 3, 4, 5, 5.1, 5.2, 6, 6.1, 7, 8, 8.1, got 'banana'"),
    ("a cat --v 9", "prompt: --v must be one of 1, 2, 3, 4, 5, 5.1, 5.2, 6, 6.1, 7, 8, 8.1, got '9'"),
    ("a cat --niji 3", "prompt: --niji must be one of 4, 5, 6, 7, got '3'"),
    ("a cat --style cute", "prompt: --style must be one of raw, got 'cute'"),
    ("a cat --tile yes", "prompt: --tile takes no value, got 'yes'"),
    ("a cat --s 100 200", "prompt: --s takes one value, got '100 200'"),
    ("a cat --ar", "prompt: --ar needs a value"),
    ("a cat --no", "prompt: --no needs a value"),
    ("a cat --ar 5:1", "prompt: --ar must be within 1:4 and 4:1, got '5:1'"),
    ("a cat --ar 16x9", "prompt: --ar needs a ratio W:H like 16:9, got '16x9'"),
    ("a cat --ar 0:9", "prompt: --ar needs both sides of the ratio above 0, got '0:9'"),
    ('a sign saying "OPEN', 'prompt: a double quote (") is not closed'),
    ("::2 cat", "prompt: a part of the multi-prompt before '::' is empty"),
    ("cat:: ::2", "prompt: a part of the multi-prompt before '::' is empty"),
    ("cat::-1", "prompt: the multi-prompt weights must add up to more than 0"),
    ("cat::1 dog::-1", "prompt: the multi-prompt weights must add up to more than 0"),
    ("cat::11", "prompt: multi-prompt weight 11 is outside a number -10-10"),
    ("a cat " + "x" * 4000, "prompt: longer than 4000 characters (4006)"),
    (
        " ".join(f"https://x.org/{i}.png" for i in range(6)) + " a cat",
        "prompt: at most 5 image prompts, got 6",
    ),
]


@pytest.mark.parametrize(("text", "canonical"), VALID)
def test_valid_prompts_have_one_canonical_form(text: str, canonical: str) -> None:
    prompt = parse_prompt(text)
    assert prompt.canonical() == canonical
    # The canonical form means the same thing: parsing it gives the same prompt back.
    assert parse_prompt(canonical) == prompt


@pytest.mark.parametrize(("text", "error"), INVALID)
def test_invalid_prompts_name_field_and_rule(text: str, error: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_prompt(text)
    assert err.value.description == error


def test_multi_prompt_parts_feed_positive_and_negative_text() -> None:
    prompt = parse_prompt("hot dog::1.5 food::-0.5 bun --no mustard")
    assert prompt.positive_text == "hot dog, bun"
    assert prompt.negative_text == "mustard, food"


@pytest.mark.parametrize(
    ("ratio", "size"),
    [("1:1", (512, 512)), ("16:9", (680, 384)), ("9:16", (384, 680)), ("2:3", (416, 624)), ("4:1", (1024, 256))],
)
def test_aspect_ratio_keeps_the_pixel_budget(ratio: str, size: tuple[int, int]) -> None:
    w, h = AspectRatio.parse(ratio).size(512)
    assert (w, h) == size
    assert w % 8 == 0 and h % 8 == 0
    assert abs(w * h - 512 * 512) / (512 * 512) < 0.05


@pytest.mark.parametrize("speed", ["relax", "fast", "turbo"])
def test_speed_flags_round_trip(speed: str) -> None:
    p = parse_prompt(f"a fox --{speed.upper()} --ar 3:2")
    assert p.speed == speed and p.canonical() == f"a fox --ar 3:2 --{speed}" and parse_prompt(p.canonical()) == p


def test_a_speed_flag_takes_no_value() -> None:
    with pytest.raises(ValidationError, match="--fast takes no value, got '2'"):
        parse_prompt("a fox --fast 2")
